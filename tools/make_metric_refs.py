#!/usr/bin/env python3
"""Write reference values for test/eval-metrics.test.ts (Fréchet distance, KID, precision/recall).

Run with Debian's python3 (numpy, scipy 1.10):
    /usr/bin/python3 tools/make_metric_refs.py
Output (committed, so CI needs neither numpy nor scipy):
    test/fixtures/eval/features.safetensors  the feature sets and numpy's mean/covariance of the small ones
    test/fixtures/eval/refs.json             the metric values and the KID subset indices

Feature sets are stored, not regenerated from a seed in TypeScript. The d = 2048 sets are stored
as int8 codes q with value q * WIDE_SCALE (a power of two, so the float64 values are exact on both
sides) to keep the files small.

References, each computed here independently of the TypeScript code:
- Fréchet distance as pytorch-fid's calculate_frechet_distance: scipy.linalg.sqrtm(sigma1 @ sigma2),
  retried with eps * I added to both covariances when the root is not finite, imaginary part dropped
  (an imaginary diagonal above 1e-3 is an error there). Also two values that take no square root of
  a singular matrix, to show how far scipy's own rounding goes for singular covariances: a numpy eigh
  form and the nuclear norm of A B^T from the centred features (see nuclear_distance).
- KID: the unbiased MMD^2 estimator of Binkowski et al. with the polynomial kernel
  k(x, y) = (gamma <x, y> + coef0)^degree, on the stored subset index lists; std with ddof = 0.
- Precision/recall (Kynkaanniemi et al. 2019): brute-force Euclidean distances from explicit
  differences; a sample lies in a manifold when it is within the k-th nearest-neighbour radius
  (self excluded) of some sample of the other set.
"""
import json
import os
import struct

import numpy as np
import scipy
import scipy.linalg

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'eval')
WIDE_SCALE = 1.0 / 32.0


def write_safetensors(path, tensors):
    """Minimal safetensors writer (the format: u64 header length, JSON header, raw little-endian data)."""
    codes = {np.dtype('float64'): 'F64', np.dtype('int8'): 'I8', np.dtype('int64'): 'I64'}
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        data = arr.astype(arr.dtype.newbyteorder('<'), copy=False).tobytes()
        header[name] = {'dtype': codes[arr.dtype], 'shape': list(arr.shape), 'data_offsets': [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header['__metadata__'] = {'generator': 'tools/make_metric_refs.py'}
    head = json.dumps(header, separators=(',', ':')).encode()
    head += b' ' * (-len(head) % 8)
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(struct.pack('<Q', len(head)))
        f.write(head)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def pytorch_fid_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """The pytorch-fid formula (re-stated here, not copied): returns (distance, eps fallback used)."""
    diff = mu1 - mu2
    covmean, _ = scipy.linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    used_eps = False
    if not np.isfinite(covmean).all():
        used_eps = True
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError('imaginary component %g' % np.max(np.abs(covmean.imag)))
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)), used_eps


def eigh_distance(mu1, sigma1, mu2, sigma2):
    """tr sqrt(S1 S2) as sum sqrt(eig(S1^1/2 S2 S1^1/2)), negative round-off clipped (numpy, no truncation)."""
    l, u = np.linalg.eigh(sigma1)
    root1 = (u * np.sqrt(np.clip(l, 0, None))) @ u.T
    m = root1 @ sigma2 @ root1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def nuclear_distance(a, b):
    """From the features themselves: with centred rows A (n_a x d), B (n_b x d), S1 = A^T A / (n_a - 1) and
    S2 = B^T B / (n_b - 1), the nonzero eigenvalues of S1 S2 are the squared singular values of A B^T over
    (n_a - 1)(n_b - 1), so tr sqrt(S1 S2) = ||A B^T||_* / sqrt((n_a - 1)(n_b - 1)). No square root of a
    singular matrix is taken, so this is accurate to float64 rounding whatever the ranks."""
    ca, cb = a - a.mean(axis=0), b - b.mean(axis=0)
    tr_covmean = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / np.sqrt((len(a) - 1) * (len(b) - 1))
    diff = a.mean(axis=0) - b.mean(axis=0)
    return float(diff.dot(diff) + (ca * ca).sum() / (len(a) - 1) + (cb * cb).sum() / (len(b) - 1) - 2 * tr_covmean)


def stats(x):
    return x.mean(axis=0), np.cov(x, rowvar=False)


def random_spd(rng, d, spread):
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (q * np.exp(rng.uniform(-spread, spread, d))) @ q.T


def gaussian(rng, n, mean, cov):
    return rng.multivariate_normal(mean, cov, size=n, method='cholesky')


def wide_codes(rng, n, d, rank, shift):
    """int8 codes of correlated features: a low-rank signal plus noise, like pooled CNN features."""
    basis = np.random.default_rng(99).standard_normal((rank, d)) / np.sqrt(rank)
    x = rng.standard_normal((n, rank)) @ basis + 0.3 * rng.standard_normal((n, d)) + shift
    return np.clip(np.round(x / WIDE_SCALE / 4), -127, 127).astype(np.int8)


def kid_unbiased(x, y, degree, gamma, coef0):
    """Unbiased MMD^2 (Binkowski et al. 2018, eq. for MMD_u^2) with the polynomial kernel, in float64."""
    m = x.shape[0]
    assert y.shape[0] == m
    kxx = (gamma * (x @ x.T) + coef0) ** degree
    kyy = (gamma * (y @ y.T) + coef0) ** degree
    kxy = (gamma * (x @ y.T) + coef0) ** degree
    off_xx = kxx.sum() - np.trace(kxx)
    off_yy = kyy.sum() - np.trace(kyy)
    return float((off_xx + off_yy) / (m * (m - 1)) - 2 * kxy.sum() / (m * m))


def kid_case(rng, a, b, subsets, size, degree=3, gamma=None, coef0=1.0):
    gamma = 1.0 / a.shape[1] if gamma is None else gamma
    idx = [(sorted(rng.choice(len(a), size, replace=False).tolist()),
            sorted(rng.choice(len(b), size, replace=False).tolist())) for _ in range(subsets)]
    values = [kid_unbiased(a[ia], b[ib], degree, gamma, coef0) for ia, ib in idx]
    return {
        'subset_indices': [{'a': ia, 'b': ib} for ia, ib in idx],
        'options': {'degree': degree, 'gamma': gamma, 'coef0': coef0},
        'values': values, 'mean': float(np.mean(values)), 'std': float(np.std(values)),
    }


def manifold_radii(x, k):
    dist = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    return np.sort(dist, axis=1)[:, k]  # column 0 is the point itself


def coverage(points, centres, radii):
    dist = np.sqrt(((points[:, None, :] - centres[None, :, :]) ** 2).sum(-1))
    return float((dist <= radii[None, :]).any(axis=1).mean())


def precision_recall(real, fake, k):
    return {'k': k,
            'precision': coverage(fake, real, manifold_radii(real, k)),
            'recall': coverage(real, fake, manifold_radii(fake, k))}


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    rng = np.random.default_rng(20240605)
    tensors, refs = {}, {'scipy': scipy.__version__, 'numpy': np.__version__, 'wide_scale': WIDE_SCALE, 'fd': {}}

    # Fréchet distance: n > d, n < d (singular covariances), and d = 2048 with n = 300 / 250.
    d = 32
    full_a = gaussian(rng, 200, np.zeros(d), random_spd(rng, d, 1.0))
    full_b = gaussian(rng, 150, rng.normal(0, 0.5, d), random_spd(rng, d, 1.0))
    d = 64
    small_a = gaussian(rng, 50, np.zeros(d), random_spd(rng, d, 1.5))
    small_b = gaussian(rng, 60, rng.normal(0, 0.3, d), random_spd(rng, d, 1.5))
    wide_a = wide_codes(rng, 300, 2048, 40, 0.0)
    wide_b = wide_codes(rng, 250, 2048, 40, 0.05)
    cases = {
        'full': (full_a, full_b),
        'small': (small_a, small_b),
        'wide': (wide_a.astype(np.float64) * WIDE_SCALE, wide_b.astype(np.float64) * WIDE_SCALE),
    }
    tensors.update({'full.a': full_a, 'full.b': full_b, 'small.a': small_a, 'small.b': small_b,
                    'wide.a_codes': wide_a, 'wide.b_codes': wide_b})
    for name, (a, b) in cases.items():
        mu1, s1 = stats(a)
        mu2, s2 = stats(b)
        if name != 'wide':
            tensors.update({f'{name}.mu_a': mu1, f'{name}.sigma_a': s1, f'{name}.mu_b': mu2, f'{name}.sigma_b': s2})
        fd, used_eps = pytorch_fid_distance(mu1, s1, mu2, s2)
        refs['fd'][name] = {
            'n_a': a.shape[0], 'n_b': b.shape[0], 'dim': a.shape[1],
            'fd_scipy': fd, 'scipy_eps_fallback': used_eps,
            'fd_eigh_numpy': eigh_distance(mu1, s1, mu2, s2),
            'fd_from_features': nuclear_distance(a, b),
            'trace_a': float(np.trace(s1)), 'trace_b': float(np.trace(s2)),
            'mu_a_sum': float(mu1.sum()), 'mu_b_sum': float(mu2.sum()),
            'rank_a': int(np.linalg.matrix_rank(s1)), 'rank_b': int(np.linalg.matrix_rank(s2)),
        }
        print(name, refs['fd'][name])

    # KID: two samples of one distribution, a shifted one, and options other than the defaults.
    d = 16
    cov = random_spd(rng, d, 0.5)
    kid_a = gaussian(rng, 120, np.zeros(d), cov)
    kid_b = gaussian(rng, 100, np.zeros(d), cov)
    kid_c = gaussian(rng, 110, np.full(d, 0.5), cov)
    tensors.update({'kid.a': kid_a, 'kid.b': kid_b, 'kid.c': kid_c})
    refs['kid'] = {
        'same': kid_case(rng, kid_a, kid_b, 20, 50),
        'shifted': kid_case(rng, kid_a, kid_c, 20, 50),
        'options': kid_case(rng, kid_a, kid_c, 5, 80, degree=2, gamma=0.25, coef0=0.5),
        # One subset holding every row of both sets: any subset order gives this value.
        'whole': {'options': {'degree': 3, 'gamma': 1.0 / d, 'coef0': 1.0},
                  'value': kid_unbiased(kid_a[:100], kid_b, 3, 1.0 / d, 1.0)},
    }
    print('kid', {k: (v.get('mean'), v.get('std')) for k, v in refs['kid'].items()})

    # Precision/recall: overlapping but different distributions.
    d = 8
    real = rng.standard_normal((200, d))
    fake = 1.3 * rng.standard_normal((150, d)) + 0.4
    tensors.update({'pr.real': real, 'pr.fake': fake})
    refs['pr'] = [precision_recall(real, fake, k) for k in (3, 5)]
    print('pr', refs['pr'])

    write_safetensors(os.path.join(OUT_DIR, 'features.safetensors'), tensors)
    tmp = os.path.join(OUT_DIR, 'refs.json.tmp')
    with open(tmp, 'w') as f:
        json.dump(refs, f, indent=1, allow_nan=False)
        f.write('\n')
    os.replace(tmp, os.path.join(OUT_DIR, 'refs.json'))


if __name__ == '__main__':
    main()
