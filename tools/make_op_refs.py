#!/usr/bin/env python3
"""Write small PyTorch reference values for test/ops-values.test.ts.

Run with a Python that has torch (made with Debian's torch 1.13):
    /usr/bin/python3 tools/make_op_refs.py
Output: test/fixtures/ops/refs.json (committed, so CI needs no torch).

Every case holds its inputs (rebuilt by the TS test from the stored values, not from an
RNG), the arguments the TS side passes, and PyTorch's outputs. float32 values are written
as the shortest decimal that rounds back to the same float32, so `Math.fround` on the JSON
number gives the exact bits; float64 values as Python's repr (also exact). Non-finite
values are the strings "inf", "-inf" and "nan".

`tol` is "exact" (bit for bit) for ops whose results are exactly rounded (basic IEEE
arithmetic, comparisons, shape and indexing ops, RNG draws), else [atol, rtol].
"""
import json
import math
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'ops', 'refs.json')

DTYPES = {torch.float32: 'float32', torch.float64: 'float64', torch.int64: 'int64', torch.bool: 'bool'}
EXACT = 'exact'
TOL = [1e-5, 1e-5]
LOOSE = [2e-5, 1e-4]  # longer accumulations (convolutions, bicubic)


def f32_short(v):
    """The shortest decimal that reads back as the same float32, as a Python float."""
    if math.isnan(v):
        return 'nan'
    if math.isinf(v):
        return 'inf' if v > 0 else '-inf'
    bits = struct.pack('<f', v)
    for p in range(1, 10):
        s = '%.*g' % (p, v)
        if struct.pack('<f', float(s)) == bits:
            return float(s)
    raise AssertionError(v)


def f64(v):
    if math.isnan(v):
        return 'nan'
    if math.isinf(v):
        return 'inf' if v > 0 else '-inf'
    return v


def enc(t):
    t = t.detach().contiguous()
    flat = t.reshape(-1).tolist()
    dt = DTYPES[t.dtype]
    if dt == 'float32':
        data = [f32_short(v) for v in flat]
    elif dt == 'float64':
        data = [f64(v) for v in flat]
    elif dt == 'bool':
        data = [1 if v else 0 for v in flat]
    else:
        data = [int(v) for v in flat]
    return {'dtype': dt, 'shape': list(t.shape), 'data': data}


def enc_out(o):
    if isinstance(o, (list, tuple)):
        return [enc_out(x) for x in o]
    return enc(o)


CASES = []
NAMES = set()


def case(name, op, inputs, out, args=None, tol=TOL):
    assert name not in NAMES, name
    NAMES.add(name)
    c = {'name': name, 'op': op}
    if args:
        c['args'] = args
    c['inputs'] = {k: enc(v) for k, v in inputs.items()}
    c['out'] = enc_out(out)
    c['tol'] = tol
    CASES.append(c)


g = torch.Generator().manual_seed(1234)


def rn(*shape):
    return torch.randn(*shape, generator=g)


def pos(*shape):
    return torch.rand(*shape, generator=g) + 0.5


def ints(lo, hi, *shape):
    return torch.randint(lo, hi, shape, generator=g)


def rounded(*shape):
    """Small whole numbers as float32, so comparisons see ties."""
    return torch.randint(-2, 3, shape, generator=g).float()


# ---------------------------------------------------------------- elementwise
a, b = rn(2, 3), rn(3)
bp = pos(3)
for fn in ['add', 'sub', 'mul', 'div', 'maximum', 'minimum']:
    case(fn, 'binary', {'a': a, 'b': b}, getattr(torch, fn)(a, b), {'fn': fn}, EXACT)
a3, b3 = rn(2, 1, 3), rn(4, 1)
case('add broadcast 3d', 'binary', {'a': a3, 'b': b3}, a3 + b3, {'fn': 'add'}, EXACT)
case('mul broadcast 3d', 'binary', {'a': a3, 'b': b3}, a3 * b3, {'fn': 'mul'}, EXACT)
case('add alpha', 'binary', {'a': a, 'b': b}, torch.add(a, b, alpha=2.5), {'fn': 'add', 'alpha': 2.5})
case('sub alpha', 'binary', {'a': a, 'b': b}, torch.sub(a, b, alpha=-3), {'fn': 'sub', 'alpha': -3})
pa = pos(2, 3)
case('pow tensor', 'binary', {'a': pa, 'b': b}, torch.pow(pa, b), {'fn': 'pow'})
for mode in ['trunc', 'floor']:
    num = rn(2, 3) * 4
    case(f'div rounding {mode}', 'binary', {'a': num, 'b': bp}, torch.div(num, bp, rounding_mode=mode),
         {'fn': 'div', 'roundingMode': mode}, EXACT)
    case(f'div scalar rounding {mode}', 'scalar', {'a': num}, torch.div(num, 1.5, rounding_mode=mode),
         {'fn': 'div', 's': 1.5, 'roundingMode': mode}, EXACT)
xs = rn(2, 3)
case('add scalar', 'scalar', {'a': xs}, xs + 2.5, {'fn': 'add', 's': 2.5}, EXACT)
case('add scalar alpha', 'scalar', {'a': xs}, torch.add(xs, 2, alpha=3), {'fn': 'add', 's': 2, 'alpha': 3}, EXACT)
case('sub scalar', 'scalar', {'a': xs}, xs - 0.75, {'fn': 'sub', 's': 0.75}, EXACT)
case('mul scalar', 'scalar', {'a': xs}, xs * 3, {'fn': 'mul', 's': 3}, EXACT)
case('div scalar', 'scalar', {'a': xs}, xs / 4, {'fn': 'div', 's': 4}, EXACT)
case('div scalar inexact', 'scalar', {'a': xs}, xs / 3, {'fn': 'div', 's': 3})
case('rsub', 'scalar', {'a': xs}, 1.5 - xs, {'fn': 'rsub', 's': 1.5}, EXACT)
xp = pos(2, 3)
case('pow scalar 2', 'scalar', {'a': xs}, xs.pow(2), {'fn': 'pow', 's': 2}, EXACT)
case('pow scalar 3', 'scalar', {'a': xs}, xs.pow(3), {'fn': 'pow', 's': 3})
case('pow scalar 0.5', 'scalar', {'a': xp}, xp.pow(0.5), {'fn': 'pow', 's': 0.5})
case('pow scalar -1.7', 'scalar', {'a': xp}, xp.pow(-1.7), {'fn': 'pow', 's': -1.7})
xm = rn(2, 3) * 3
case('fmod', 'scalar', {'a': xm}, torch.fmod(xm, 1.5), {'fn': 'fmod', 's': 1.5}, EXACT)
case('remainder', 'scalar', {'a': xm}, torch.remainder(xm, 1.5), {'fn': 'remainder', 's': 1.5}, EXACT)

ra, rb = rounded(3, 4), rounded(4)
for fn in ['eq', 'ne', 'lt', 'le', 'gt', 'ge']:
    case(fn, 'binary', {'a': ra, 'b': rb}, getattr(torch, fn)(ra, rb), {'fn': fn}, EXACT)
    case(f'{fn} scalar', 'scalar', {'a': ra}, getattr(torch, fn)(ra, 1), {'fn': fn, 's': 1}, EXACT)
ma, mb = rn(2, 3) > 0, rn(3) > 0
case('logical_and', 'binary', {'a': ma, 'b': mb}, torch.logical_and(ma, mb), {'fn': 'logicalAnd'}, EXACT)
case('logical_or', 'binary', {'a': ma, 'b': mb}, torch.logical_or(ma, mb), {'fn': 'logicalOr'}, EXACT)
case('logical_not', 'unary', {'x': ma}, torch.logical_not(ma), {'fn': 'logicalNot'}, EXACT)

special = torch.tensor([0.0, -0.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.7, 3.2, 1e-3, -7.25, 100.0])
ux = rn(3, 4)
uxp = pos(3, 4)
UNARY = {
    'neg': (ux, EXACT), 'exp': (ux, TOL), 'log': (uxp, TOL), 'sqrt': (uxp, EXACT), 'rsqrt': (uxp, TOL),
    'abs': (ux, EXACT), 'sin': (ux, TOL), 'cos': (ux, TOL), 'tanh': (ux, TOL), 'sigmoid': (ux, TOL),
    'relu': (ux, EXACT), 'square': (ux, EXACT), 'reciprocal': (uxp, EXACT), 'floor': (special, EXACT),
    'ceil': (special, EXACT), 'round': (special, EXACT), 'sign': (special, EXACT), 'erf': (ux, TOL),
    'log1p': (uxp, TOL), 'expm1': (ux, TOL),
}
for fn, (x, tol) in UNARY.items():
    case(fn, 'unary', {'x': x}, getattr(torch, fn)(x), {'fn': fn}, tol)
nonfinite = torch.tensor([1.0, float('inf'), float('-inf'), float('nan'), -0.0, 3.0])
for fn in ['isnan', 'isfinite', 'isinf']:
    case(fn, 'unary', {'x': nonfinite}, getattr(torch, fn)(nonfinite), {'fn': fn}, EXACT)

wc, wa, wb = rn(2, 3) > 0, rn(2, 3), rn(3)
case('where', 'where', {'c': wc, 'a': wa, 'b': wb}, torch.where(wc, wa, wb), {}, EXACT)
case('where scalar other', 'where', {'c': wc, 'a': wa}, torch.where(wc, wa, -1.5), {'b': -1.5}, EXACT)
case('where scalar self', 'where', {'c': wc, 'b': wb}, torch.where(wc, 0.25, wb), {'a': 0.25}, EXACT)
case('where scalars', 'where', {'c': wc}, torch.where(wc, 0.5, -2.5), {'a': 0.5, 'b': -2.5}, EXACT)

cx = rn(3, 4) * 2
case('clamp', 'clamp', {'x': cx}, cx.clamp(-0.5, 0.75), {'min': -0.5, 'max': 0.75}, EXACT)
case('clamp min only', 'clamp', {'x': cx}, cx.clamp(min=0.1), {'min': 0.1}, EXACT)
case('clamp max only', 'clamp', {'x': cx}, cx.clamp(max=-0.2), {'max': -0.2}, EXACT)
clo, chi = rn(4) - 1, rn(3, 1) + 1
case('clamp tensor', 'clamp', {'x': cx, 'lo': clo, 'hi': chi}, torch.clamp(cx, clo, chi), {}, EXACT)
case('clamp tensor min number max', 'clamp', {'x': cx, 'lo': clo}, torch.clamp(cx, clo, torch.tensor(0.5)),
     {'max': 0.5}, EXACT)
case('clamp_', 'clamp_', {'x': cx}, cx.clone().clamp_(-1, 1), {'min': -1, 'max': 1}, EXACT)

la, lb, lw = rn(2, 3), rn(2, 3), torch.rand(3, generator=g)
case('lerp scalar', 'lerp', {'a': la, 'b': lb}, torch.lerp(la, lb, 0.3), {'w': 0.3})
case('lerp tensor', 'lerp', {'a': la, 'b': lb, 'w': lw}, torch.lerp(la, lb, lw), {})
t1, t2 = rn(2, 3), pos(3)
case('addcmul', 'addc', {'x': la, 't1': t1, 't2': t2}, torch.addcmul(la, t1, t2, value=0.5), {'fn': 'addcmul', 'value': 0.5})
case('addcdiv', 'addc', {'x': la, 't1': t1, 't2': t2}, torch.addcdiv(la, t1, t2, value=2), {'fn': 'addcdiv', 'value': 2})

# ---------------------------------------------------------------- reductions
r = rn(2, 3, 4)
case('sum', 'reduce', {'x': r}, r.sum(), {'fn': 'sum'})
case('sum dim', 'reduce', {'x': r}, r.sum(1), {'fn': 'sum', 'dim': 1})
case('sum dims keepdim', 'reduce', {'x': r}, r.sum([0, 2], keepdim=True), {'fn': 'sum', 'dim': [0, 2], 'keepdim': True})
case('sum dtype float64', 'reduce', {'x': r}, r.sum(dtype=torch.float64), {'fn': 'sum', 'dtype': 'float64'})
ri = ints(-5, 6, 2, 3, 4)
case('sum int64', 'reduce', {'x': ri}, ri.sum(-1), {'fn': 'sum', 'dim': -1}, EXACT)
case('mean', 'reduce', {'x': r}, r.mean(), {'fn': 'mean'})
case('mean dim keepdim', 'reduce', {'x': r}, r.mean(-1, keepdim=True), {'fn': 'mean', 'dim': -1, 'keepdim': True})
case('mean dims', 'reduce', {'x': r}, r.mean([0, 1]), {'fn': 'mean', 'dim': [0, 1]})
for fn in ['var', 'std']:
    case(fn, 'varstd', {'x': r}, getattr(r, fn)(), {'fn': fn})
    case(f'{fn} dim', 'varstd', {'x': r}, getattr(r, fn)(1), {'fn': fn, 'dim': 1})
    case(f'{fn} dims unbiased=False keepdim', 'varstd', {'x': r}, getattr(r, fn)([0, 2], unbiased=False, keepdim=True),
         {'fn': fn, 'dim': [0, 2], 'correction': 0, 'keepdim': True})
rt = rn(2, 3, 4)  # distinct values, no ties
for fn in ['max', 'min']:
    case(fn, 'maxmin', {'x': rt}, getattr(rt, fn)(), {'fn': fn}, EXACT)
    case(f'{fn} dim', 'maxmin', {'x': rt}, list(getattr(rt, fn)(1)), {'fn': fn, 'dim': 1}, EXACT)
    case(f'{fn} dim keepdim', 'maxmin', {'x': rt}, list(getattr(rt, fn)(-1, keepdim=True)),
         {'fn': fn, 'dim': -1, 'keepdim': True}, EXACT)
case('argmax', 'arg', {'x': rt}, rt.argmax(), {'fn': 'argmax'}, EXACT)
case('argmax dim keepdim', 'arg', {'x': rt}, rt.argmax(2, keepdim=True), {'fn': 'argmax', 'dim': 2, 'keepdim': True}, EXACT)
case('argmin dim', 'arg', {'x': rt}, rt.argmin(0), {'fn': 'argmin', 'dim': 0}, EXACT)
case('amax', 'arg', {'x': rt}, rt.amax([0, 1]), {'fn': 'amax', 'dim': [0, 1]}, EXACT)
case('amin keepdim', 'arg', {'x': rt}, rt.amin(1, keepdim=True), {'fn': 'amin', 'dim': 1, 'keepdim': True}, EXACT)
case('logsumexp', 'logsumexp', {'x': r}, torch.logsumexp(r, 1), {'dim': 1})
case('logsumexp dims keepdim', 'logsumexp', {'x': r}, torch.logsumexp(r, [0, 2], keepdim=True), {'dim': [0, 2], 'keepdim': True})
big = rn(2, 3) * 50 + 80
case('logsumexp large values', 'logsumexp', {'x': big}, torch.logsumexp(big, -1), {'dim': -1})
pr = pos(2, 3)
case('prod', 'prod', {'x': pr}, pr.prod(), {})
case('norm', 'norm', {'x': r}, torch.linalg.vector_norm(r), {})
case('norm p1 dim', 'norm', {'x': r}, torch.linalg.vector_norm(r, 1, dim=1), {'p': 1, 'dim': 1})
case('norm inf dims keepdim', 'norm', {'x': r}, torch.linalg.vector_norm(r, float('inf'), dim=[0, 2], keepdim=True),
     {'p': 'inf', 'dim': [0, 2], 'keepdim': True})
case('cumsum', 'cumsum', {'x': r}, r.cumsum(2), {'dim': 2})
anyx = torch.tensor([[False, False], [True, False]])
case('any', 'anyall', {'x': anyx}, anyx.any(), {'fn': 'any'}, EXACT)
case('all', 'anyall', {'x': anyx}, anyx.all(), {'fn': 'all'}, EXACT)
case('sort', 'sort', {'x': rt}, list(rt.sort(-1)), {}, EXACT)
case('sort dim descending', 'sort', {'x': rt}, list(rt.sort(1, descending=True)), {'dim': 1, 'descending': True}, EXACT)
case('argsort', 'argsort', {'x': rt}, rt.argsort(0, descending=True), {'dim': 0, 'descending': True}, EXACT)
case('topk', 'topk', {'x': rt}, list(rt.topk(2)), {'k': 2}, EXACT)
case('topk smallest dim', 'topk', {'x': rt}, list(rt.topk(2, dim=1, largest=False)), {'k': 2, 'dim': 1, 'largest': False}, EXACT)

# ---------------------------------------------------------------- linear algebra
m1, m2 = rn(3, 4), rn(4, 5)
case('matmul', 'matmul', {'a': m1, 'b': m2}, m1 @ m2)
bm1 = rn(2, 3, 4)
case('matmul batched broadcast', 'matmul', {'a': bm1, 'b': m2}, bm1 @ m2)
v4 = rn(4)
case('matmul vector matrix', 'matmul', {'a': v4, 'b': m2}, v4 @ m2)
case('matmul matrix vector', 'matmul', {'a': m1, 'b': v4}, m1 @ v4)
case('matmul dot', 'matmul', {'a': v4, 'b': v4}, v4 @ v4)
case('mm', 'mm', {'a': m1, 'b': m2}, m1.mm(m2))
bb2 = rn(2, 4, 5)
case('bmm', 'bmm', {'a': bm1, 'b': bb2}, torch.bmm(bm1, bb2))
bin_ = rn(2, 3, 5)
case('baddbmm', 'baddbmm', {'x': bin_, 'a': bm1, 'b': bb2}, torch.baddbmm(bin_, bm1, bb2, beta=0.5, alpha=2),
     {'beta': 0.5, 'alpha': 2})
case('baddbmm defaults', 'baddbmm', {'x': bin_, 'a': bm1, 'b': bb2}, torch.baddbmm(bin_, bm1, bb2), {})
ov1, ov2 = rn(3), rn(4)
case('outer', 'outer', {'a': ov1, 'b': ov2}, torch.outer(ov1, ov2), {}, EXACT)
case('t', 't', {'x': m1}, m1.t(), {}, EXACT)
lx, lw_, lb_ = rn(2, 3, 4), rn(5, 4), rn(5)
case('linear', 'linear', {'x': lx, 'w': lw_, 'b': lb_}, F.linear(lx, lw_, lb_))
case('linear no bias', 'linear', {'x': lx, 'w': lw_}, F.linear(lx, lw_))
case('einsum', 'einsum', {'a': bm1, 'b': bb2}, torch.einsum('bij,bjk->bik', bm1, bb2), {'eq': 'bij,bjk->bik'})

# ---------------------------------------------------------------- shape ops (exact)
s = rn(2, 3, 4)
case('reshape', 'shape', {'x': s}, s.reshape(4, -1), {'fn': 'reshape', 'shape': [4, -1]}, EXACT)
case('view', 'shape', {'x': s}, s.view(6, 4), {'fn': 'view', 'shape': [6, 4]}, EXACT)
case('permute', 'shape', {'x': s}, s.permute(2, 0, 1), {'fn': 'permute', 'shape': [2, 0, 1]}, EXACT)
case('transpose', 'transpose', {'x': s}, s.transpose(0, 2), {'d0': 0, 'd1': 2}, EXACT)
case('transpose negative dims', 'transpose', {'x': s}, s.transpose(-1, -2), {'d0': -1, 'd1': -2}, EXACT)
case('flatten', 'flatten', {'x': s}, s.flatten(), {}, EXACT)
case('flatten start', 'flatten', {'x': s}, s.flatten(1), {'start': 1}, EXACT)
sq = rn(1, 3, 1, 2)
case('squeeze', 'squeeze', {'x': sq}, sq.squeeze(), {}, EXACT)
case('squeeze dim', 'squeeze', {'x': sq}, sq.squeeze(2), {'dim': 2}, EXACT)
case('squeeze dim not 1', 'squeeze', {'x': sq}, sq.squeeze(1), {'dim': 1}, EXACT)
case('unsqueeze', 'unsqueeze', {'x': s}, s.unsqueeze(1), {'dim': 1}, EXACT)
case('unsqueeze negative', 'unsqueeze', {'x': s}, s.unsqueeze(-1), {'dim': -1}, EXACT)
ex = rn(3, 1)
case('expand', 'shape', {'x': ex}, ex.expand(2, 3, 4), {'fn': 'expand', 'shape': [2, 3, 4]}, EXACT)
case('expand -1', 'shape', {'x': ex}, ex.expand(-1, 5), {'fn': 'expand', 'shape': [-1, 5]}, EXACT)
case('repeat', 'shape', {'x': ex}, ex.repeat(2, 1, 3), {'fn': 'repeat', 'shape': [2, 1, 3]}, EXACT)
case('contiguous', 'contiguous', {'x': s}, s.transpose(0, 1).contiguous(), {}, EXACT)
c1, c2, c3 = rn(2, 1, 3), rn(2, 2, 3), rn(2, 3, 3)
case('cat', 'cat', {'a': c1, 'b': c2, 'c': c3}, torch.cat([c1, c2, c3], 1), {'dim': 1}, EXACT)
case('cat dim 0', 'cat', {'a': c2, 'b': c2}, torch.cat([c2, c2]), {}, EXACT)
case('stack', 'stack', {'a': c2, 'b': c2 * 2, 'c': c2 + 1}, torch.stack([c2, c2 * 2, c2 + 1], 1), {'dim': 1}, EXACT)
case('stack last', 'stack', {'a': c1, 'b': c1}, torch.stack([c1, c1], -1), {'dim': -1}, EXACT)
sp = rn(2, 5)
case('split', 'split', {'x': sp}, list(sp.split(2, 1)), {'size': 2, 'dim': 1}, EXACT)
case('split sizes', 'split', {'x': sp}, list(sp.split([1, 4], 1)), {'size': [1, 4], 'dim': 1}, EXACT)
case('chunk', 'chunk', {'x': sp}, list(sp.chunk(3, 1)), {'chunks': 3, 'dim': 1}, EXACT)
case('chunk dim 0', 'chunk', {'x': sp}, list(sp.chunk(2)), {'chunks': 2}, EXACT)
case('narrow', 'narrow', {'x': sp}, sp.narrow(1, 1, 3), {'dim': 1, 'start': 1, 'length': 3}, EXACT)
case('flip', 'flip', {'x': s}, s.flip([0, 2]), {'dims': [0, 2]}, EXACT)
case('roll', 'roll', {'x': sp}, sp.roll(2, 1), {'shifts': 2, 'dim': 1}, EXACT)
tr = rn(3, 4)
case('tril', 'tri', {'x': tr}, tr.tril(), {'fn': 'tril'}, EXACT)
case('triu diagonal', 'tri', {'x': tr}, tr.triu(1), {'fn': 'triu', 'diagonal': 1}, EXACT)
bt1, bt2 = rn(3, 1), rn(2)
case('broadcast_tensors', 'broadcastTensors', {'a': bt1, 'b': bt2}, list(torch.broadcast_tensors(bt1, bt2)), {}, EXACT)

# ---------------------------------------------------------------- indexing (exact)
ix = rn(3, 5)
case('slice', 'slice', {'x': ix}, ix[:, 1:4:2], {'dim': 1, 'start': 1, 'end': 4, 'step': 2}, EXACT)
case('slice negative end', 'slice', {'x': ix}, ix[:, :-2], {'dim': 1, 'end': -2}, EXACT)
case('slice open end', 'slice', {'x': ix}, ix[1:], {'dim': 0, 'start': 1}, EXACT)
case('select', 'select', {'x': ix}, ix[:, 2], {'dim': 1, 'index': 2}, EXACT)
case('select negative', 'select', {'x': ix}, ix[-1], {'dim': 0, 'index': -1}, EXACT)
isel = torch.tensor([4, 0, 4, 2])
case('index_select', 'indexSelect', {'x': ix, 'i': isel}, ix.index_select(1, isel), {'dim': 1}, EXACT)
gi = ints(0, 5, 3, 2)
case('gather', 'gather', {'x': ix, 'i': gi}, ix.gather(1, gi), {'dim': 1}, EXACT)
gi0 = ints(0, 3, 2, 5)
case('gather dim 0', 'gather', {'x': ix, 'i': gi0}, ix.gather(0, gi0), {'dim': 0}, EXACT)
sa_src, sa_idx = rn(3, 4), ints(0, 5, 3, 4)
case('scatter_add', 'scatterAdd', {'x': ix, 'i': sa_idx, 'src': sa_src}, ix.scatter_add(1, sa_idx, sa_src), {'dim': 1})
mask = rn(3, 5) > 0.3
case('masked_fill', 'maskedFill', {'x': ix, 'm': mask}, ix.masked_fill(mask, -2.5), {'value': -2.5}, EXACT)
mrow = rn(5) > 0
case('masked_fill broadcast mask', 'maskedFill', {'x': ix, 'm': mrow}, ix.masked_fill(mrow, 7), {'value': 7}, EXACT)
mval = torch.tensor(0.125)
case('masked_fill tensor value', 'maskedFill', {'x': ix, 'm': mask, 'v': mval}, ix.masked_fill(mask, mval), {}, EXACT)
case('masked_fill_', 'maskedFill_', {'x': ix, 'm': mask}, ix.clone().masked_fill_(mask, 3.5), {'value': 3.5}, EXACT)
case('masked_select', 'maskedSelect', {'x': ix, 'm': mask}, ix.masked_select(mask), {}, EXACT)
case('masked_select broadcast', 'maskedSelect', {'x': ix, 'm': mrow}, ix.masked_select(mrow), {}, EXACT)
case('bool mask index', 'index', {'x': ix, 'i0': mask}, ix[mask], {}, EXACT)
case('bool mask index row', 'index', {'x': ix, 'i0': mrow[:3]}, ix[mrow[:3]], {}, EXACT)
ai0, ai1 = torch.tensor([0, 2, 2, 1]), torch.tensor([4, 0, 3, 3])
case('advanced index', 'index', {'x': ix, 'i0': ai0, 'i1': ai1}, ix[ai0, ai1], {}, EXACT)
case('advanced index second dim', 'index', {'x': ix, 'i1': ai1}, ix[:, ai1], {}, EXACT)
ai2 = torch.tensor([[0, 1], [2, 0]])
case('advanced index 2d', 'index', {'x': ix, 'i0': ai2}, ix[ai2], {}, EXACT)
ipv = rn(4)
ip = ix.clone()
ip[ai0, ai1] = ipv
case('index_put_', 'indexPut_', {'x': ix, 'i0': ai0, 'i1': ai1, 'v': ipv}, ip, {}, EXACT)
ipa = ix.clone().index_put_((ai0, ai1), ipv, accumulate=True)
case('index_put_ accumulate', 'indexPut_', {'x': ix, 'i0': ai0, 'i1': ai1, 'v': ipv}, ipa, {'accumulate': True})
ipm = ix.clone()
ipm[mask] = 0.5
case('index_put_ bool mask', 'indexPut_', {'x': ix, 'i0': mask, 'v': torch.tensor(0.5)}, ipm, {}, EXACT)
nz = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, -1.0]])
case('nonzero', 'nonzero', {'x': nz}, nz.nonzero(), {}, EXACT)

# ---------------------------------------------------------------- functional
lnx, lnw, lnb = rn(2, 3, 4), rn(4), rn(4)
case('layer_norm', 'layerNorm', {'x': lnx, 'w': lnw, 'b': lnb}, F.layer_norm(lnx, [4], lnw, lnb), {'shape': [4]})
case('layer_norm no affine', 'layerNorm', {'x': lnx}, F.layer_norm(lnx, [4]), {'shape': [4]})
lnw2, lnb2 = rn(3, 4), rn(3, 4)
case('layer_norm 2 dims eps', 'layerNorm', {'x': lnx, 'w': lnw2, 'b': lnb2}, F.layer_norm(lnx, [3, 4], lnw2, lnb2, eps=1e-3),
     {'shape': [3, 4], 'eps': 1e-3})
gnx, gnw, gnb = rn(2, 4, 3, 3), rn(4), rn(4)
case('group_norm', 'groupNorm', {'x': gnx, 'w': gnw, 'b': gnb}, F.group_norm(gnx, 2, gnw, gnb), {'groups': 2})
case('group_norm no affine', 'groupNorm', {'x': gnx}, F.group_norm(gnx, 4), {'groups': 4})
ax = rn(3, 4) * 2
case('gelu', 'act', {'x': ax}, F.gelu(ax), {'fn': 'gelu'})
case('gelu tanh', 'act', {'x': ax}, F.gelu(ax, approximate='tanh'), {'fn': 'gelu', 'approximate': 'tanh'})
case('silu', 'act', {'x': ax}, F.silu(ax), {'fn': 'silu'})
case('relu functional', 'act', {'x': ax}, F.relu(ax), {'fn': 'relu'}, EXACT)
case('softmax', 'softmax', {'x': ax}, F.softmax(ax, -1), {'fn': 'softmax', 'dim': -1})
case('softmax dim 0', 'softmax', {'x': ax}, F.softmax(ax, 0), {'fn': 'softmax', 'dim': 0})
case('softmax dtype float64', 'softmax', {'x': ax}, F.softmax(ax, 1, dtype=torch.float64),
     {'fn': 'softmax', 'dim': 1, 'dtype': 'float64'})
case('log_softmax', 'softmax', {'x': ax}, F.log_softmax(ax, -1), {'fn': 'logSoftmax', 'dim': -1})
case('log_softmax dim 0', 'softmax', {'x': ax}, F.log_softmax(ax, 0), {'fn': 'logSoftmax', 'dim': 0})

cvx, cvw, cvb = rn(2, 2, 5, 5), rn(3, 2, 3, 3), rn(3)
case('conv2d', 'conv2d', {'x': cvx, 'w': cvw, 'b': cvb}, F.conv2d(cvx, cvw, cvb), {}, LOOSE)
case('conv2d stride padding', 'conv2d', {'x': cvx, 'w': cvw, 'b': cvb}, F.conv2d(cvx, cvw, cvb, stride=2, padding=1),
     {'stride': 2, 'padding': 1}, LOOSE)
case('conv2d asymmetric stride padding', 'conv2d', {'x': cvx, 'w': cvw}, F.conv2d(cvx, cvw, None, stride=(1, 2), padding=(2, 0)),
     {'stride': [1, 2], 'padding': [2, 0]}, LOOSE)
cgx, cgw = rn(1, 4, 4, 4), rn(6, 2, 3, 3)
case('conv2d groups', 'conv2d', {'x': cgx, 'w': cgw}, F.conv2d(cgx, cgw, None, padding=1, groups=2),
     {'padding': 1, 'groups': 2}, LOOSE)
case('conv2d dilation', 'conv2d', {'x': cvx, 'w': cvw, 'b': cvb}, F.conv2d(cvx, cvw, cvb, dilation=2, padding=1),
     {'dilation': 2, 'padding': 1}, LOOSE)
ctx, ctw, ctb = rn(1, 2, 3, 3), rn(2, 3, 3, 3), rn(3)
case('conv_transpose2d', 'convTranspose2d', {'x': ctx, 'w': ctw, 'b': ctb}, F.conv_transpose2d(ctx, ctw, ctb), {}, LOOSE)
case('conv_transpose2d stride padding output_padding', 'convTranspose2d', {'x': ctx, 'w': ctw, 'b': ctb},
     F.conv_transpose2d(ctx, ctw, ctb, stride=2, padding=1, output_padding=1),
     {'stride': 2, 'padding': 1, 'outputPadding': 1}, LOOSE)
ctgx, ctgw = rn(1, 4, 3, 3), rn(4, 1, 2, 2)
case('conv_transpose2d groups', 'convTranspose2d', {'x': ctgx, 'w': ctgw}, F.conv_transpose2d(ctgx, ctgw, None, stride=2, groups=2),
     {'stride': 2, 'groups': 2}, LOOSE)

px = rn(1, 2, 5, 6)
case('avg_pool2d', 'avgPool2d', {'x': px}, F.avg_pool2d(px, 2), {'kernel': 2})
case('avg_pool2d stride padding', 'avgPool2d', {'x': px}, F.avg_pool2d(px, 3, stride=2, padding=1),
     {'kernel': 3, 'stride': 2, 'padding': 1})
case('avg_pool2d exclude pad ceil', 'avgPool2d', {'x': px},
     F.avg_pool2d(px, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
     {'kernel': 3, 'stride': 2, 'padding': 1, 'ceilMode': True, 'countIncludePad': False})
case('avg_pool2d rect kernel', 'avgPool2d', {'x': px}, F.avg_pool2d(px, (2, 3)), {'kernel': [2, 3]})
case('max_pool2d', 'maxPool2d', {'x': px}, F.max_pool2d(px, 2), {'kernel': 2}, EXACT)
case('max_pool2d stride padding', 'maxPool2d', {'x': px}, F.max_pool2d(px, 3, stride=2, padding=1),
     {'kernel': 3, 'stride': 2, 'padding': 1}, EXACT)
case('max_pool2d ceil dilation', 'maxPool2d', {'x': px}, F.max_pool2d(px, 2, stride=2, dilation=2, ceil_mode=True),
     {'kernel': 2, 'stride': 2, 'dilation': 2, 'ceilMode': True}, EXACT)
case('adaptive_avg_pool2d', 'adaptiveAvgPool2d', {'x': px}, F.adaptive_avg_pool2d(px, (2, 4)), {'size': [2, 4]})

ux4 = rn(1, 2, 3, 4)
case('interpolate nearest scale', 'interpolate', {'x': ux4}, F.interpolate(ux4, scale_factor=2, mode='nearest'),
     {'scaleFactor': 2, 'mode': 'nearest'}, EXACT)
case('interpolate nearest size', 'interpolate', {'x': ux4}, F.interpolate(ux4, size=(5, 3), mode='nearest'),
     {'size': [5, 3], 'mode': 'nearest'}, EXACT)
case('interpolate nearest default mode', 'interpolate', {'x': ux4}, F.interpolate(ux4, size=4), {'size': 4}, EXACT)
for ac in [False, True]:
    suffix = ' align_corners' if ac else ''
    case('interpolate bilinear' + suffix, 'interpolate', {'x': ux4},
         F.interpolate(ux4, size=(5, 7), mode='bilinear', align_corners=ac),
         {'size': [5, 7], 'mode': 'bilinear', 'alignCorners': ac})
    case('interpolate bicubic' + suffix, 'interpolate', {'x': ux4},
         F.interpolate(ux4, size=(6, 7), mode='bicubic', align_corners=ac),
         {'size': [6, 7], 'mode': 'bicubic', 'alignCorners': ac}, LOOSE)
case('interpolate bilinear scale', 'interpolate', {'x': ux4},
     F.interpolate(ux4, scale_factor=1.5, mode='bilinear', align_corners=False),
     {'scaleFactor': 1.5, 'mode': 'bilinear', 'alignCorners': False})
case('interpolate bilinear downscale', 'interpolate', {'x': px},
     F.interpolate(px, size=(3, 4), mode='bilinear', align_corners=False),
     {'size': [3, 4], 'mode': 'bilinear', 'alignCorners': False})
case('pad', 'pad', {'x': ux4}, F.pad(ux4, (1, 2), value=0.5), {'pad': [1, 2], 'value': 0.5}, EXACT)
case('pad 2d', 'pad', {'x': ux4}, F.pad(ux4, (1, 1, 2, 0)), {'pad': [1, 1, 2, 0]}, EXACT)
case('pad negative crops', 'pad', {'x': ux4}, F.pad(ux4, (-1, 0, 0, -1)), {'pad': [-1, 0, 0, -1]}, EXACT)

ew, eids = rn(6, 3), torch.tensor([[1, 5, 1], [0, 2, 4]])
case('embedding', 'embedding', {'ids': eids, 'w': ew}, F.embedding(eids, ew), {}, EXACT)
li, lt = rn(3, 4), rn(3, 4)
for red in ['none', 'mean', 'sum']:
    case(f'mse_loss {red}', 'loss', {'a': li, 'b': lt}, F.mse_loss(li, lt, reduction=red), {'fn': 'mse', 'reduction': red})
    case(f'l1_loss {red}', 'loss', {'a': li, 'b': lt}, F.l1_loss(li, lt, reduction=red), {'fn': 'l1', 'reduction': red})
case('mse_loss default', 'loss', {'a': li, 'b': lt}, F.mse_loss(li, lt), {'fn': 'mse'})
case('dropout eval is identity', 'dropoutEval', {'x': li}, li, {}, EXACT)


def attention(q, k, v, mask=None, causal=False, scale=None):
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q * scale) @ k.transpose(-2, -1)
    if causal:
        keep = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
        scores = scores.masked_fill(~keep, float('-inf'))
    if mask is not None:
        scores = scores.masked_fill(~mask, float('-inf')) if mask.dtype == torch.bool else scores + mask
    return torch.softmax(scores, -1) @ v


q, k, v = rn(1, 2, 4, 8), rn(1, 2, 4, 8), rn(1, 2, 4, 8)
case('attention', 'attention', {'q': q, 'k': k, 'v': v}, attention(q, k, v), {})
case('attention scale', 'attention', {'q': q, 'k': k, 'v': v}, attention(q, k, v, scale=0.2), {'scale': 0.2})
bmask = rn(4, 4) > -0.5
bmask[:, 0] = True  # every query keeps one key
case('attention bool mask', 'attention', {'q': q, 'k': k, 'v': v, 'mask': bmask}, attention(q, k, v, mask=bmask), {})
fmask = rn(1, 1, 4, 4)
case('attention float mask', 'attention', {'q': q, 'k': k, 'v': v, 'mask': fmask}, attention(q, k, v, mask=fmask), {})
case('attention causal', 'attention', {'q': q, 'k': k, 'v': v}, attention(q, k, v, causal=True), {'isCausal': True})
q3, k5, v5 = rn(2, 3, 8), rn(2, 5, 8), rn(2, 5, 6)
case('attention causal rectangular', 'attention', {'q': q3, 'k': k5, 'v': v5}, attention(q3, k5, v5, causal=True),
     {'isCausal': True})

# ---------------------------------------------------------------- creation and conversion
case('zeros', 'create', {}, torch.zeros(2, 3), {'fn': 'zeros', 'shape': [2, 3]}, EXACT)
case('ones float64', 'create', {}, torch.ones(3, dtype=torch.float64), {'fn': 'ones', 'shape': [3], 'dtype': 'float64'}, EXACT)
case('full', 'create', {}, torch.full((2, 2), 1.25), {'fn': 'full', 'shape': [2, 2], 'value': 1.25}, EXACT)
case('arange int', 'create', {}, torch.arange(5), {'fn': 'arange', 'start': 5}, EXACT)
case('arange start step', 'create', {}, torch.arange(2, 11, 3), {'fn': 'arange', 'start': 2, 'end': 11, 'step': 3}, EXACT)
case('arange float step', 'create', {}, torch.arange(0, 2, 0.25), {'fn': 'arange', 'start': 0, 'end': 2, 'step': 0.25}, EXACT)
case('linspace', 'create', {}, torch.linspace(-1, 2, 7), {'fn': 'linspace', 'start': -1, 'end': 2, 'steps': 7})
case('eye', 'create', {}, torch.eye(3), {'fn': 'eye', 'n': 3}, EXACT)
cv = torch.tensor([-2.7, -0.5, 0.0, 1.5, 3.9])
case('to int64', 'to', {'x': cv}, cv.long(), {'dtype': 'int64'}, EXACT)
case('to float64', 'to', {'x': cv}, cv.double(), {'dtype': 'float64'}, EXACT)
case('to bool', 'to', {'x': cv}, cv.bool(), {'dtype': 'bool'}, EXACT)
hx = rn(7)
case('half round trip', 'to', {'x': hx}, hx.half().float(), {'dtype': 'float16'}, EXACT)
case('bfloat16 round trip', 'to', {'x': hx}, hx.bfloat16().float(), {'dtype': 'bfloat16'}, EXACT)

# ---------------------------------------------------------------- RNG parity (bit for bit)
torch.manual_seed(0)
case('rng randn', 'rng', {}, torch.randn(2, 3), {'seed': 0, 'fn': 'randn', 'shape': [2, 3]}, EXACT)
torch.manual_seed(0)
case('rng rand', 'rng', {}, torch.rand(2, 3), {'seed': 0, 'fn': 'rand', 'shape': [2, 3]}, EXACT)
torch.manual_seed(7)
case('rng randn float64', 'rng', {}, torch.randn(5, dtype=torch.float64),
     {'seed': 7, 'fn': 'randn', 'shape': [5], 'dtype': 'float64'}, EXACT)
torch.manual_seed(0)
case('rng randint', 'rng', {}, torch.randint(0, 10, (5,)), {'seed': 0, 'fn': 'randint', 'low': 0, 'high': 10, 'shape': [5]}, EXACT)
torch.manual_seed(0)
case('rng randperm', 'rng', {}, torch.randperm(10), {'seed': 0, 'fn': 'randperm', 'n': 10}, EXACT)
probs = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]])
torch.manual_seed(0)
case('rng multinomial', 'rng', {'p': probs}, torch.multinomial(probs, 3), {'seed': 0, 'fn': 'multinomial', 'n': 3}, EXACT)
torch.manual_seed(3)
case('rng multinomial replacement', 'rng', {'p': probs}, torch.multinomial(probs, 6, replacement=True),
     {'seed': 3, 'fn': 'multinomial', 'n': 6, 'replacement': True}, EXACT)
torch.manual_seed(0)
seq = [torch.randn(2, 3), torch.rand(4), torch.randint(-3, 3, (3,))]
case('rng sequence continues the stream', 'rng', {}, seq, {'seed': 0, 'fn': 'sequence'}, EXACT)
torch.manual_seed(0)
# 16 or more normal draws use a vectorised fill whose last bit may depend on the CPU.
case('rng randn large', 'rng', {}, torch.randn(4, 8), {'seed': 0, 'fn': 'randn', 'shape': [4, 8]}, [1e-6, 1e-6])
torch.manual_seed(5)
base = torch.zeros(2, 3)
case('rng randn_like rand_like', 'rng', {'x': base}, [torch.randn_like(base), torch.rand_like(base)],
     {'seed': 5, 'fn': 'like'}, EXACT)
gen = torch.Generator().manual_seed(42)
draws = [torch.empty(2, 3).normal_(generator=gen), torch.empty(5).uniform_(-1, 1, generator=gen),
         torch.empty(3).normal_(2, 0.5, generator=gen), torch.randn(4, generator=gen), torch.rand(3, generator=gen)]
case('rng generator normal_ uniform_', 'rng', {}, draws, {'seed': 42, 'fn': 'generator'}, EXACT)
torch.manual_seed(0)
lin = nn.Linear(4, 3)
case('rng nn.Linear init', 'rng', {}, [lin.weight, lin.bias], {'seed': 0, 'fn': 'linear', 'in': 4, 'out': 3}, EXACT)
torch.manual_seed(0)
conv = nn.Conv2d(2, 3, 3)
case('rng nn.Conv2d init', 'rng', {}, [conv.weight, conv.bias], {'seed': 0, 'fn': 'conv2d', 'in': 2, 'out': 3, 'k': 3}, EXACT)
torch.manual_seed(1)
conv = nn.Conv2d(4, 2, (1, 2), groups=2, bias=False)
case('rng nn.Conv2d init groups no bias', 'rng', {}, [conv.weight],
     {'seed': 1, 'fn': 'conv2d', 'in': 4, 'out': 2, 'k': [1, 2], 'groups': 2, 'bias': False}, EXACT)


def main():
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    doc = {'generator': 'tools/make_op_refs.py', 'torch': torch.__version__, 'cases': CASES}
    text = json.dumps(doc, separators=(',', ':'), allow_nan=False)
    # One case a line keeps diffs readable.
    text = text.replace(',{"name"', ',\n{"name"')
    with open(OUT, 'w') as f:
        f.write(text + '\n')
    print(f'{len(CASES)} cases, {len(text)} bytes -> {os.path.relpath(OUT)}')


if __name__ == '__main__':
    main()
