#!/usr/bin/env node
'use strict';
// Builds native/build/difftune.node against the libtorch that find-libtorch.js picks.
// Plain g++ instead of node-gyp: one flag set for the CPU and CUDA builds, parallel
// translation units, and rebuilds only what changed.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');
const { findLibtorch } = require('./find-libtorch');

const here = __dirname;
const outDir = path.join(here, 'build');
const sources = fs.readdirSync(path.join(here, 'src')).filter((f) => f.endsWith('.cc')).sort();
const headers = fs.readdirSync(path.join(here, 'src')).filter((f) => f.endsWith('.h')).map((f) => path.join(here, 'src', f));

function nodeIncludeDir() {
  const candidates = [
    process.env.NODE_INCLUDE,
    process.env.npm_config_nodedir && path.join(process.env.npm_config_nodedir, 'include', 'node'),
    path.join(path.dirname(process.execPath), '..', 'include', 'node'),
    '/usr/include/node',
  ].filter(Boolean);
  const dir = candidates.find((d) => fs.existsSync(path.join(d, 'node_api.h')));
  if (!dir) throw new Error('Node\'s N-API headers (node_api.h) were not found: set NODE_INCLUDE to their folder.');
  return dir;
}

function run(cmd, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited with ${code}`))));
  });
}

function newer(target, deps) {
  if (!fs.existsSync(target)) return true;
  const t = fs.statSync(target).mtimeMs;
  return deps.some((d) => fs.statSync(d).mtimeMs > t);
}

async function main() {
  let torch;
  try {
    torch = findLibtorch();
  } catch (e) {
    console.error(`difftune: ${e.message}`);
    process.exit(1);
  }
  const addonApi = path.dirname(require.resolve('node-addon-api/package.json'));
  const cxx = process.env.CXX || 'g++';
  const flags = [
    '-std=c++17', '-O2', '-fPIC', '-fvisibility=hidden', '-Wall', '-Wno-unused-parameter',
    '-DNAPI_VERSION=8', '-DNAPI_CPP_EXCEPTIONS', '-DNODE_ADDON_API_DISABLE_DEPRECATED',
    `-D_GLIBCXX_USE_CXX11_ABI=${torch.cxx11Abi ? 1 : 0}`,
    `-I${nodeIncludeDir()}`, `-I${addonApi}`, ...torch.includeDirs.map((d) => `-I${d}`),
  ];
  if (torch.cuda) flags.push('-DDIFFTUNE_CUDA');
  const libs = [`-L${torch.libDir}`, `-Wl,-rpath,${torch.libDir}`];
  // Without --no-as-needed the linker drops libtorch_cuda and CUDA is never registered.
  if (torch.cuda) libs.push('-Wl,--no-as-needed', '-ltorch_cuda', '-lc10_cuda', '-Wl,--as-needed');
  libs.push('-ltorch', '-ltorch_cpu', '-lc10');
  console.log(`difftune: building the addon against libtorch ${torch.version} from ${torch.source}` +
    `${torch.cuda ? ' (CUDA)' : ' (CPU)'}`);

  fs.mkdirSync(outDir, { recursive: true });
  const flagFile = path.join(outDir, 'flags.txt');
  const flagText = JSON.stringify([cxx, flags, libs]);
  const flagsChanged = !fs.existsSync(flagFile) || fs.readFileSync(flagFile, 'utf8') !== flagText;
  const objects = sources.map((s) => path.join(outDir, s.replace(/\.cc$/, '.o')));
  const jobs = sources
    .map((s, i) => ({ src: path.join(here, 'src', s), obj: objects[i] }))
    .filter(({ src, obj }) => flagsChanged || newer(obj, [src, ...headers]));
  const parallel = Math.max(1, Math.min(jobs.length, Number(process.env.JOBS) || os.cpus().length));
  let next = 0;
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (next < jobs.length) {
      const { src, obj } = jobs[next++];
      console.log(`  compile ${path.basename(src)}`);
      await run(cxx, [...flags, '-c', src, '-o', obj]);
    }
  }));
  const target = path.join(outDir, 'difftune.node');
  if (jobs.length || flagsChanged || !fs.existsSync(target)) {
    await run(cxx, ['-shared', '-o', target + '.tmp', ...objects, ...libs]);
    fs.renameSync(target + '.tmp', target);
  }
  fs.writeFileSync(flagFile, flagText);
  console.log(`difftune: addon ready at ${path.relative(process.cwd(), target)}`);
}

main().catch((e) => {
  console.error(`difftune: native build failed: ${e.message}`);
  process.exit(1);
});
