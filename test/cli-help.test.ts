// The CLI's own documentation tells the truth: every `npx difftune` line of the README names a
// command and flags that exist, and every --help states each option's type and default.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { ICONNET_SETS } from '../src/data/datasets/iconify';
import { findDataset } from '../src/data/datasets/registry';
import { difftune } from './helpers/difftune-cli';

const ROOT = path.join(__dirname, '..', '..');
const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');

/** The README's `npx difftune ...` commands (continuation lines joined, comments dropped), as argv. */
export function readmeCommands(text: string): string[][] {
  const out: string[][] = [];
  const lines = text.replace(/\\\n/g, ' ').split('\n');
  for (const line of lines) {
    const code = line.replace(/\s#.*$/, '');
    const m = /(?:^|&&\s*)npx difftune\s+(.*)$/.exec(code.trim());
    if (m) out.push(m[1].trim().split(/\s+/));
  }
  return out;
}

const helps = new Map<string, string>();
/** `difftune <command> [sub] --help`, cached. */
function help(words: string[]): string {
  const key = words.join(' ');
  if (!helps.has(key)) helps.set(key, difftune([...words, '--help']).stdout);
  return helps.get(key)!;
}

/** The option rows of a --help text: `  --flag <value>` and the description line under it. */
function options(text: string): { flag: string; value?: string; help: string }[] {
  const lines = text.split('\n');
  return lines.flatMap((line, i) => {
    const m = /^ {2}(--[a-z0-9-]+)(?: <([^>]+)>)?$/.exec(line);
    return m ? [{ flag: m[1], value: m[2], help: lines[i + 1] ?? '' }] : [];
  });
}

/** The words naming the command: the subcommand too for datasets and extractor. */
function commandWords(argv: string[]): string[] {
  return ['datasets', 'extractor'].includes(argv[0]) ? argv.slice(0, 2) : argv.slice(0, 1);
}

const COMMANDS = ['bank', 'controlnet', 'demo', 'eval', 'ewc', 'export', 'finetune', 'forgetting', 'gate', 'info', 'plan', 'pretrain', 'sample',
  'datasets build', 'datasets list', 'datasets encode', 'datasets condition', 'extractor train'];

test('every `npx difftune` line of the README names a command and flags that exist', () => {
  const commands = readmeCommands(README);
  assert.ok(commands.length >= 20, `found only ${commands.length} README commands`);
  const known = difftune(['--help']).stdout;
  for (const argv of commands) {
    const shown = `npx difftune ${argv.join(' ')}`;
    assert.match(known, new RegExp(`^  ${argv[0]} `, 'm'), `${shown}: no command '${argv[0]}'`);
    const words = commandWords(argv);
    const text = help(words);
    assert.match(text, new RegExp(`^usage: difftune ${words.join(' ')}\\b`), `${shown}: --help names another command`);
    for (const flag of argv.filter((a) => a.startsWith('--'))) {
      const name = flag.replace(/=.*$/, '');
      assert.ok(options(text).some((o) => o.flag === name), `${shown}: '${words.join(' ')}' has no option ${name}`);
    }
  }
});

test('the README parser finds commands, joined continuation lines and flags', () => {
  const cmds = readmeCommands('x\nnpm ci && npx difftune demo   # the demo\nnpx difftune finetune --a 1 \\\n  --b 2\n`npx difftune info` in prose\n');
  assert.deepEqual(cmds, [['demo'], ['finetune', '--a', '1', '--b', '2']]);
});

test('every --help names its own command and gives each option a type and a default (or says it is required)', () => {
  for (const command of COMMANDS) {
    const words = command.split(' ');
    const text = help(words);
    assert.match(text, new RegExp(`^usage: difftune ${command}\\b`), `${command} --help`);
    for (const o of options(text)) {
      if (o.value === undefined) continue; // a boolean: off unless given
      assert.match(o.help, /default|required/, `${command}: ${o.flag} states no default`);
    }
  }
});

test('trainer flags show the config field type and default, and --set', () => {
  for (const command of ['finetune', 'pretrain', 'plan', 'controlnet']) {
    const text = help([command]);
    assert.match(text, /--steps <integer>\n\s+run\.steps: .*\(default 24000\)/, command);
    assert.match(text, /--set <path=value>/, command);
    assert.match(text, /--precision <fp32\|bf16\|auto>/, command);
  }
  assert.match(help(['finetune']), /--lr <number>/);
  assert.match(help(['controlnet']), /--method <full\|diff-tuning>\n.*\(default "full"\)/);
  assert.doesNotMatch(help(['plan']), /--resume/, 'plan trains nothing to resume');
  const missing = difftune(['finetune', '--steps'], { ok: false });
  assert.match(missing.stderr, /--steps needs a value \(<integer>\)/);
});

test('iconnet: the registry, the README and the built dataset agree on its sets and size', () => {
  const entry = findDataset('iconnet');
  assert.match(entry.summary, new RegExp(`\\b${ICONNET_SETS.length} Iconify sets`));
  assert.match(README, new RegExp(`iconnet .*\\b${ICONNET_SETS.length} palette sets`));
  const built = path.join(ROOT, 'data', 'iconnet', 'dataset.json');
  if (fs.existsSync(built)) {
    const info = JSON.parse(fs.readFileSync(built, 'utf8'));
    assert.equal(Object.keys(info.classes).length, ICONNET_SETS.length);
    assert.ok(Math.abs(entry.expected - info.count) / info.count < 0.02, `expected ${entry.expected} vs built ${info.count}`);
    assert.match(README, new RegExp(`iconnet .*${info.count.toLocaleString('en-US')} icons`));
  }
});

test('--version, "did you mean" for a mistyped command, and a non-zero exit with no command', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  assert.equal(difftune(['--version']).stdout.trim(), `difftune ${pkg.version}`);
  const typo = difftune(['finetuen'], { ok: false });
  assert.equal(typo.status, 2);
  assert.match(typo.stderr, /unknown command 'finetuen' \(did you mean 'finetune'\?\)/);
  const none = difftune([], { ok: false });
  assert.equal(none.status, 2);
  assert.match(none.stderr, /^usage: difftune <command>/);
});
