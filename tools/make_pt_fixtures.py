#!/usr/bin/env python3
"""Write small torch.save fixtures (and expected values) for test/io-pickle.test.ts.

Run with a Python that has torch (tested with Debian's torch 1.13):
    python3 tools/make_pt_fixtures.py
Outputs go to test/fixtures/pt/. The files are committed, so CI needs no torch.

The hostile fixtures are only *written* here, never loaded: their payloads
would create MARKER_* files, and the tests assert those never appear.
"""
import argparse
import collections
import io
import json
import os
import pickle
import struct
import zipfile

import torch
import torch.nn as nn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'pt')
MARKER_SYSTEM = '/tmp/difftune-io-fixture-pwned-system'
MARKER_EVAL = '/tmp/difftune-io-fixture-pwned-eval'

DTYPE_NAMES = {
    torch.float32: 'float32', torch.float64: 'float64', torch.float16: 'float16',
    torch.bfloat16: 'bfloat16', torch.int64: 'int64', torch.int32: 'int32',
    torch.int16: 'int16', torch.int8: 'int8', torch.uint8: 'uint8', torch.bool: 'bool',
}


def describe_tensor(t):
    """Expected dtype, shape, exact little-endian bytes (hex) and readable values."""
    c = t.detach().contiguous()
    raw = c.reshape(-1).view(torch.uint8).numpy().tobytes() if c.numel() else b''
    if c.dtype == torch.int64:
        values = [str(v) for v in c.reshape(-1).tolist()]  # may exceed 2**53
    elif c.dtype == torch.bool:
        values = [int(v) for v in c.reshape(-1).tolist()]
    elif c.dtype in (torch.float16, torch.bfloat16, torch.float32):
        values = c.reshape(-1).float().tolist()
    else:
        values = c.reshape(-1).tolist()
    return {'dtype': DTYPE_NAMES[c.dtype], 'shape': list(c.shape), 'hex': raw.hex(), 'values': values}


def describe_sd(sd):
    return {k: describe_tensor(v) for k, v in sd.items()}


def save(obj, name):
    path = os.path.join(OUT, name)
    torch.save(obj, path)
    return path


def plain_state_dict():
    g = torch.Generator().manual_seed(1234)
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    sd = collections.OrderedDict()
    sd['f32'] = torch.randn(3, 4, generator=g)
    sd['f64'] = torch.randn(2, 3, generator=g, dtype=torch.float64)
    sd['f16'] = torch.randn(5, generator=g).half()
    sd['bf16'] = torch.randn(2, 2, generator=g).bfloat16()
    sd['i64'] = torch.tensor([0, -1, 2**40, -(2**62), 2**62 + 1, 7], dtype=torch.int64)
    sd['i32'] = torch.tensor([-(2**31), 2**31 - 1, 0, 5], dtype=torch.int32)
    sd['i16'] = torch.tensor([-32768, 32767, 3], dtype=torch.int16)
    sd['i8'] = torch.tensor([-128, 127, -3], dtype=torch.int8)
    sd['u8'] = torch.arange(0, 256, 37, dtype=torch.uint8)
    sd['bool'] = torch.tensor([True, False, True, True])
    sd['scalar'] = torch.tensor(3.5)
    sd['empty'] = torch.zeros(0, 3)
    # Non-contiguous: transposes (2-D and 3-D), a stepped slice, an expanded view.
    sd['transposed'] = torch.randn(3, 5, generator=g).t()
    sd['permuted_f64'] = torch.randn(2, 3, 4, generator=g, dtype=torch.float64).permute(2, 0, 1)
    sd['stepped'] = torch.arange(20, dtype=torch.int16)[1::3]
    sd['expanded'] = torch.tensor([1.0, 2.0]).expand(3, 2)
    # Two views of one storage, at offsets 4 and 1 (the second non-contiguous).
    sd['shared_row'] = base[1:]
    sd['shared_col'] = base[:, 1]
    return sd


def training_checkpoint():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    ema = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    ema.load_state_dict(model.state_dict())
    for p in ema.parameters():
        p.data.mul_(0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), weight_decay=0.0)
    model(torch.randn(5, 4)).square().mean().backward()
    opt.step()
    args = argparse.Namespace(lr=1e-4, epochs=3, model='DiT-XL/2', flags=[1, 2])
    ckpt = {'model': model.state_dict(), 'ema': ema.state_dict(), 'opt': opt.state_dict(), 'args': args}
    expected = {
        'model': describe_sd(ckpt['model']),
        'ema': describe_sd(ckpt['ema']),
        'opt_state_keys': list(ckpt['opt']['state'].keys()),
        'opt_state0': {k: describe_tensor(v) for k, v in ckpt['opt']['state'][0].items()},
        'param_groups': [
            {k: (list(v) if isinstance(v, tuple) else v) for k, v in pg.items()}
            for pg in ckpt['opt']['param_groups']
        ],
        'args': vars(args),
    }
    return ckpt, expected


def module_state_dict():
    torch.manual_seed(1)
    m = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    m.train()
    m(torch.randn(4, 3))  # update BatchNorm running stats and num_batches_tracked
    sd = m.state_dict(keep_vars=True)  # Parameters stay Parameters
    assert isinstance(sd['0.weight'], nn.Parameter)
    metadata = {k: dict(v) for k, v in sd._metadata.items()}
    return sd, {'tensors': describe_sd(sd), 'metadata': metadata}


class _Reduce:
    """Pickles as func(*args); used only to *write* hostile files."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def write_zip_with_pickle(path, pkl):
    """A torch.save-shaped archive around an arbitrary data.pkl."""
    with zipfile.ZipFile(path, 'w', compression=zipfile.ZIP_STORED) as z:
        for name, data in (('archive/data.pkl', pkl), ('archive/version', b'3\n')):
            z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)  # fixed time: reproducible bytes


def hostile():
    expected = {}
    cmd = 'touch ' + MARKER_SYSTEM
    # Hand-written protocol-2 pickle naming 'os system' directly.
    arg = cmd.encode()
    raw = b'\x80\x02cos\nsystem\nq\x00X' + struct.pack('<I', len(arg)) + arg + b'\x85R.'
    with open(os.path.join(OUT, 'hostile_os_system.pkl'), 'wb') as f:
        f.write(raw)
    expected['hostile_os_system.pkl'] = {'global': 'os.system', 'marker': MARKER_SYSTEM}
    write_zip_with_pickle(os.path.join(OUT, 'hostile_os_system_zip.pt'), raw)
    expected['hostile_os_system_zip.pt'] = {'global': 'os.system', 'marker': MARKER_SYSTEM}
    # What torch.save really writes for os.system: pickle names it posix.system.
    save({'weights': torch.ones(2), 'payload': _Reduce(os.system, (cmd,))}, 'hostile_torch_save_system.pt')
    expected['hostile_torch_save_system.pt'] = {'global': f'{os.system.__module__}.system', 'marker': MARKER_SYSTEM}
    # builtins.eval (written as __builtin__.eval by protocol 2).
    code = f"__import__('os').system('touch {MARKER_EVAL}')"
    save({'payload': _Reduce(eval, (code,))}, 'hostile_eval.pt')
    expected['hostile_eval.pt'] = {'global': 'builtins.eval', 'marker': MARKER_EVAL}
    with open(os.path.join(OUT, 'hostile_eval.pkl'), 'wb') as f:
        pickle.dump(_Reduce(eval, (code,)), f, protocol=2)
    expected['hostile_eval.pkl'] = {'global': 'builtins.eval', 'marker': MARKER_EVAL}
    return expected


def plain_pickles():
    """The same plain-Python value under protocols 2-5 (opcode coverage)."""
    shared = [7, 8]
    value = {
        'none': None, 't': True, 'f': False, 'small': 1, 'i2': 300, 'neg': -5, 'i4': 70000,
        'big': 2**40, 'huge': 2**70, 'nhuge': -(2**70), 'float': 1.5, 'inf': float('inf'),
        'negzero': -0.0, 'nan': float('nan'), 'str': 'h\u00e9llo \u2713', 'bytes': b'\x00\x01\xff',
        'list': [1, [2, 3]], 'tuple': (1, 'a'), 'empty_tuple': (), 't3': (1, 2, 3), 't4': (1, 2, 3, 4),
        'set': {1, 2}, 'frozenset': frozenset({3}), 'od': collections.OrderedDict([('b', 1), ('a', 2)]),
        'intkeys': {1: 'x', 2: 'y'}, 'shared': shared, 'shared2': shared,
        'long_str': 'x' * 300, 'long_list': list(range(1200)),
    }
    for proto in (2, 3, 4, 5):
        with open(os.path.join(OUT, f'values_p{proto}.pkl'), 'wb') as f:
            pickle.dump(value, f, protocol=proto)


def main():
    os.makedirs(OUT, exist_ok=True)
    for name in os.listdir(OUT):
        os.remove(os.path.join(OUT, name))
    expected = {}

    sd = plain_state_dict()
    save(sd, 'state_dict.pt')
    expected['state_dict.pt'] = {'tensors': describe_sd(sd), 'shared_storage': ['shared_row', 'shared_col']}

    ckpt, exp = training_checkpoint()
    save(ckpt, 'train_ckpt.pt')
    expected['train_ckpt.pt'] = exp

    msd, exp = module_state_dict()
    save(msd, 'module_params.pt')
    expected['module_params.pt'] = exp

    # (The legacy format names storages by object id, so only this file differs between runs.)
    legacy = io.BytesIO()
    torch.save({'w': torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    with open(os.path.join(OUT, 'legacy.pt'), 'wb') as f:
        f.write(legacy.getvalue())

    plain_pickles()
    expected['hostile'] = hostile()

    with open(os.path.join(OUT, 'expected.json'), 'w') as f:
        json.dump(expected, f, indent=1, sort_keys=False, allow_nan=False)
        f.write('\n')
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f'wrote {len(os.listdir(OUT))} files, {total} bytes, to {os.path.normpath(OUT)}')


if __name__ == '__main__':
    main()
