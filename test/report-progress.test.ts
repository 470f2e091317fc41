import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { formatDuration, ProgressBar } from '../src/report/progress';

/** A stream that records what is written, and a clock the test moves by hand. */
function fakes(o: { isTTY: boolean; columns?: number }) {
  const writes: string[] = [];
  const stream = { isTTY: o.isTTY, columns: o.columns, write: (s: string) => writes.push(s) };
  const clock = { ms: 1_000_000 };
  return { writes, stream, clock, now: () => clock.ms };
}

test('formatDuration writes seconds, minutes and hours as promised', () => {
  assert.equal(formatDuration(0), '0s');
  assert.equal(formatDuration(45), '45s');
  assert.equal(formatDuration(59.4), '59s');
  assert.equal(formatDuration(59.6), '1m00s');
  assert.equal(formatDuration(65), '1m05s');
  assert.equal(formatDuration(192), '3m12s');
  assert.equal(formatDuration(3599.6), '1h00m');
  assert.equal(formatDuration(3720), '1h02m');
  assert.equal(formatDuration(3720 + 59), '1h02m');
  assert.equal(formatDuration(36 * 3600 + 5 * 60), '36h05m');
  assert.equal(formatDuration(-1), '?');
  assert.equal(formatDuration(Number.NaN), '?');
  assert.equal(formatDuration(Number.POSITIVE_INFINITY), '?');
});

test('a terminal gets one redrawn line with rate, ETA and info', () => {
  const f = fakes({ isTTY: true });
  const bar = new ProgressBar({ total: 1000, label: 'train', stream: f.stream, now: f.now });
  f.clock.ms += 10_000;
  bar.update(100, { loss: 0.123449, lr: '1e-4' });
  // 100 items in 10 s = 10 it/s; 900 left / 10 it/s = 90 s. A 20-wide bar 10% full has 2 marks.
  assert.deepEqual(f.writes, ['\rtrain [##..................] 100/1000 10.0%  10.0 it/s  ETA 1m30s  loss 0.1234  lr 1e-4']);

  f.clock.ms += 30_000;
  bar.update(400); // info carries over from the previous update
  assert.equal(f.writes[1], '\rtrain [########............] 400/1000 40.0%  10.0 it/s  ETA 1m00s  loss 0.1234  lr 1e-4');

  f.clock.ms += 60_000;
  bar.done({ loss: 0.05 });
  // A shorter final line is padded over the old one and ends the line.
  const last = f.writes[2];
  assert.ok(last.startsWith('\rtrain [########............] 400/1000 40.0%  4.0 it/s  elapsed 1m40s  loss 0.05000'), last);
  assert.ok(last.endsWith(' \n'));
  assert.equal(last.length, f.writes[1].length + 1); // "\r" + the old line's width + "\n"
  bar.update(500);
  bar.done();
  assert.equal(f.writes.length, 3, 'nothing is written after done()');
});

test('a resumed run measures the rate from where it resumed', () => {
  const f = fakes({ isTTY: true });
  const bar = new ProgressBar({ total: 1000, label: 'ft', stream: f.stream, now: f.now, initial: 500 });
  f.clock.ms += 20_000;
  bar.update(600);
  // 100 new items in 20 s = 5 it/s (not 600/20), 400 left -> 80 s.
  assert.match(f.writes[0], / 600\/1000 60\.0%  5\.0 it\/s  ETA 1m20s$/);
});

test('slow steps read as seconds per item; no progress yet means an unknown ETA', () => {
  const f = fakes({ isTTY: true });
  const bar = new ProgressBar({ total: 10, label: 'sample', stream: f.stream, now: f.now });
  bar.update(0);
  assert.match(f.writes[0], / 0\/10 0\.0%  - it\/s  ETA \?$/);
  f.clock.ms += 25_000;
  bar.update(2);
  // 2 items in 25 s = 12.5 s/it; 8 left -> 100 s.
  assert.match(f.writes[1], / 2\/10 20\.0%  12\.5 s\/it  ETA 1m40s$/);
});

test('a terminal line never wider than the terminal, and redraws are throttled', () => {
  const f = fakes({ isTTY: true, columns: 60 });
  const bar = new ProgressBar({ total: 100, label: 'train', stream: f.stream, now: f.now, intervalMs: 1000 });
  f.clock.ms += 1000;
  bar.update(10, { loss: 1.5, 'a-very-long-metric-name': 123456 });
  f.clock.ms += 999;
  bar.update(11);
  f.clock.ms += 1;
  bar.update(12);
  assert.equal(f.writes.length, 2);
  for (const w of f.writes) assert.ok(w.length - 1 <= 59, `${JSON.stringify(w)} fits 59 columns`);
  assert.match(f.writes[1], /^\rtrain \[#{1}\.{9}\] 12\/100 12\.0%/);
});

test('a log (non-TTY) gets a whole line at most every 10 s, plus the final one', () => {
  const f = fakes({ isTTY: false });
  const bar = new ProgressBar({ total: 200, label: 'train', stream: f.stream, now: f.now });
  for (const [dt, done] of [[1000, 10], [4000, 50], [4900, 99]]) {
    f.clock.ms += dt;
    bar.update(done);
  }
  assert.equal(f.writes.length, 0, 'nothing before 10 s');
  f.clock.ms += 100; // t = 10 s
  bar.update(100, { loss: 2 });
  assert.deepEqual(f.writes, ['train [##########..........] 100/200 50.0%  10.0 it/s  ETA 10s  loss 2\n']);
  f.clock.ms += 9_999;
  bar.update(150);
  assert.equal(f.writes.length, 1);
  f.clock.ms += 1; // t = 20 s
  bar.update(160);
  assert.equal(f.writes.length, 2);
  assert.equal(f.writes[1], 'train [################....] 160/200 80.0%  8.0 it/s  ETA 5s  loss 2\n');
  f.clock.ms += 5_000;
  bar.update(200);
  bar.done();
  assert.equal(f.writes.length, 3);
  assert.equal(f.writes[2], 'train [####################] 200/200 100.0%  8.0 it/s  elapsed 25s  loss 2\n');
  for (const w of f.writes) assert.ok(!w.includes('\r'));
});

test('bad options are refused', () => {
  assert.throws(() => new ProgressBar({ total: Number.NaN, label: 'x' }), /total must be a finite number >= 0/);
  const bar = new ProgressBar({ total: 1, label: 'x', stream: { write: () => true } });
  assert.throws(() => bar.update(Number.POSITIVE_INFINITY), /done must be a finite number/);
});
