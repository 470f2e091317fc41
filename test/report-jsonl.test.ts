import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { JsonlLogger, readJsonl } from '../src/report/jsonl';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-jsonl-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
let fileCount = 0;
const newFile = () => path.join(root, `run${fileCount++}`, 'log.jsonl');

test('records round-trip, NaN and infinities included, one valid JSON line each', () => {
  const file = newFile();
  const log = new JsonlLogger(file);
  log.write({ step: 1, loss: 0.5, lr: 1e-4, note: 'line\nbreak "quoted"' });
  log.write({ step: 2, loss: Number.NaN, grad: [1, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY], nested: { x: Number.NaN } });
  log.write({ step: 3, big: 12345678901234567890n as unknown });
  log.close();

  const lines = fs.readFileSync(file, 'utf8').split('\n');
  assert.equal(lines.length, 4);
  assert.equal(lines[3], '');
  // Plain JSON.parse, no reviver: every line is valid JSON on its own, non-finite numbers as strings.
  const raw = lines.slice(0, 3).map((l) => JSON.parse(l));
  assert.deepEqual(raw[1], { step: 2, loss: 'NaN', grad: [1, 'Infinity', '-Infinity'], nested: { x: 'NaN' } });
  assert.deepEqual(raw[2], { step: 3, big: '12345678901234567890' });

  const records = readJsonl(file);
  assert.equal(records.length, 3);
  assert.deepEqual(records[0], { step: 1, loss: 0.5, lr: 1e-4, note: 'line\nbreak "quoted"' });
  assert.ok(Number.isNaN(records[1].loss));
  assert.deepEqual(records[1].grad, [1, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]);
  assert.ok(Number.isNaN((records[1].nested as { x: number }).x));
});

test('each write reaches the file before close()', () => {
  const file = newFile();
  const log = new JsonlLogger(file);
  log.write({ step: 1 });
  assert.deepEqual(readJsonl(file), [{ step: 1 }]);
  log.write({ step: 2 });
  assert.deepEqual(readJsonl(file), [{ step: 1 }, { step: 2 }]);
  log.close();
  assert.throws(() => log.write({ step: 3 }), /is closed/);
});

test('a truncated last line (a killed run) is ignored; a bad line elsewhere names file and line', () => {
  const file = newFile();
  const log = new JsonlLogger(file);
  for (let step = 1; step <= 3; step++) log.write({ step, loss: 1 / step });
  log.close();
  const whole = fs.readFileSync(file, 'utf8');
  fs.appendFileSync(file, '{"step": 4, "lo');
  assert.deepEqual(readJsonl(file).map((r) => r.step), [1, 2, 3]);

  fs.writeFileSync(file, whole.replace('"step":2', '"step":2,,'));
  assert.throws(() => readJsonl(file), (e: Error) => e.message.startsWith(`${file}:2: invalid JSON`));
  fs.writeFileSync(file, whole + '[1, 2]\n');
  assert.throws(() => readJsonl(file), new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:4: expected a JSON object`));
  fs.writeFileSync(file, whole + '\n\n');
  assert.equal(readJsonl(file).length, 3);
});

test('append is the default; append: false starts the file empty', () => {
  const file = newFile();
  const a = new JsonlLogger(file);
  a.write({ run: 'a' });
  a.close();
  const b = new JsonlLogger(file);
  b.write({ run: 'b' });
  b.close();
  assert.deepEqual(readJsonl(file), [{ run: 'a' }, { run: 'b' }]);
  const c = new JsonlLogger(file, { append: false });
  c.write({ run: 'c' });
  c.close();
  assert.deepEqual(readJsonl(file), [{ run: 'c' }]);
});
