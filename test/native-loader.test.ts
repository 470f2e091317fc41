// DIFFTUNE_ADDON: a relative path means the working directory, and a path that is not there is an error
// naming it (never a silent fallback to the tree's own build).
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';

const NATIVE_JS = path.join(__dirname, '..', 'src', 'torch', 'native.js');
const BUILT = path.join(__dirname, '..', '..', 'native', 'build', 'difftune.node');
const PROBE = `const { native } = require(${JSON.stringify(NATIVE_JS)}); console.log(native.buildInfo().torchVersion);`;

function loadWith(addon: string, cwd: string) {
  return spawnSync(process.execPath, ['-e', PROBE], { cwd, env: { ...process.env, DIFFTUNE_ADDON: addon }, encoding: 'utf8' });
}

test('DIFFTUNE_ADDON relative to the working directory loads that copy', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-addon-'));
  try {
    fs.mkdirSync(path.join(dir, 'copy'));
    fs.copyFileSync(BUILT, path.join(dir, 'copy', 'difftune.node'));
    const r = loadWith(path.join('copy', 'difftune.node'), dir);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout.trim(), /^\d+\.\d+/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('DIFFTUNE_ADDON pointing nowhere fails naming the path', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-addon-'));
  try {
    const r = loadWith('missing/difftune.node', dir);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /DIFFTUNE_ADDON=missing\/difftune\.node: no file at .*missing\/difftune\.node/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
