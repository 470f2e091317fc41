'use strict';
// Locates a libtorch install, in the order tch-rs uses: LIBTORCH, then the torch
// Python package (LIBTORCH_USE_PYTORCH=1), then the system (Debian's libtorch-dev).
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const FIX =
  'libtorch was not found: install it (Debian: `apt-get install libtorch-dev`), or set LIBTORCH to a folder ' +
  'with include/ and lib/, or set LIBTORCH_USE_PYTORCH=1 to use the installed torch Python package.';

function fromFolder(root, source) {
  const include = path.join(root, 'include');
  const lib = path.join(root, 'lib');
  const apiInclude = path.join(include, 'torch', 'csrc', 'api', 'include');
  if (!fs.existsSync(path.join(apiInclude, 'torch', 'torch.h')) || !fs.existsSync(path.join(lib, 'libtorch.so'))) {
    throw new Error(`${source} points at ${root}, which has no include/torch/csrc/api/include/torch/torch.h or lib/libtorch.so. ${FIX}`);
  }
  return { source, includeDirs: [include, apiInclude], libDir: lib };
}

function fromPython() {
  const python = process.env.PYTHON || 'python3';
  const script =
    'import torch,os;print(os.path.dirname(torch.__file__));print(int(torch._C._GLIBCXX_USE_CXX11_ABI))';
  let out;
  try {
    out = execFileSync(python, ['-c', script], { encoding: 'utf8' }).trim().split('\n');
  } catch (e) {
    throw new Error(`LIBTORCH_USE_PYTORCH=1 but \`${python} -c "import torch"\` failed. ${FIX}`);
  }
  const found = fromFolder(out[0], 'the torch Python package');
  found.cxx11Abi = out[1] === '1';
  return found;
}

function fromSystem() {
  const multiarch = `${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`;
  const include = '/usr/include';
  const apiInclude = path.join(include, 'torch', 'csrc', 'api', 'include');
  for (const lib of [`/usr/lib/${multiarch}`, '/usr/lib', '/usr/local/lib']) {
    if (fs.existsSync(path.join(apiInclude, 'torch', 'torch.h')) && fs.existsSync(path.join(lib, 'libtorch.so'))) {
      return { source: 'the system (libtorch-dev)', includeDirs: [include, apiInclude], libDir: lib };
    }
  }
  return null;
}

function findLibtorch() {
  let found;
  if (process.env.LIBTORCH) found = fromFolder(process.env.LIBTORCH, 'LIBTORCH');
  else if (process.env.LIBTORCH_USE_PYTORCH === '1') found = fromPython();
  else found = fromSystem();
  if (!found) throw new Error(FIX);
  found.cuda = fs.existsSync(path.join(found.libDir, 'libtorch_cuda.so'));
  if (found.cxx11Abi === undefined) {
    const env = process.env.LIBTORCH_CXX11_ABI;
    found.cxx11Abi = env === undefined ? true : env === '1';
  }
  const version = path.join(found.includeDirs[1], 'torch', 'version.h');
  const m = fs.existsSync(version) && /TORCH_VERSION\s+"?\\?\s*"([\d.]+)/.exec(fs.readFileSync(version, 'utf8'));
  found.version = m ? m[1] : 'unknown';
  return found;
}

module.exports = { findLibtorch, FIX };
