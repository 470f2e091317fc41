#!/usr/bin/env python3
"""Write the reference values for test/tuning-timesteps.test.ts and test/tuning-loss-weights.test.ts.

Run with a Python that has torch, numpy and scipy (made with Debian's torch 1.13, numpy 1.24, scipy 1.10):
    /usr/bin/python3 tools/make_tuning_refs.py
Output: test/fixtures/tuning/refs.json (committed, so the tests need no Python).

Everything is computed the way the Diff-Tuning fork (thuml/Diffusion-Tuning train.py and
diffusion/gaussian_diffusion.py) writes it, in float64, and not by the TypeScript code under test:
  - timestep laws: `[i**tau for i in range(1, T+1)]` (target, noise end) and
    `[i**tau for i in range(T, 0, -1)]` (replay, data end), divided by their sum;
  - torch.multinomial draws (with replacement) from the float64 target law, from a seeded
    torch.Generator and from the global generator after torch.manual_seed;
  - the linear schedule's SNR as the fork computes it, `1/(1 - alphas_cumprod) - 1`, and the P2,
    Min-SNR (the fork's `min(gamma, SNR)`) and canonical Min-SNR (`min(SNR, gamma)/SNR`) weights.
Python floats are written with repr, which reads back to the same double.
"""
import json
import os

import numpy as np
import scipy.stats
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'tuning', 'refs.json')
T = 1000
PROB_INDICES = [0, 1, 99, 499, 500, 998, 999]


def law(kind, tau):
    ranks = range(1, T + 1) if kind == 'noise-end' else range(T, 0, -1)
    w = np.array([float(i) ** tau for i in ranks], dtype=np.float64)
    return w / w.sum()


def summary(kind, tau):
    p = law(kind, tau)
    t = np.arange(T, dtype=np.float64)
    return {
        'kind': kind,
        'tau': tau,
        'mean': float((p * t).sum()),
        'p_lt_100': float(p[:100].sum()),
        'p_ge_900': float(p[900:].sum()),
        'probs_at': [float(p[i]) for i in PROB_INDICES],
    }


def draws():
    probs = torch.tensor(law('noise-end', 1.0), dtype=torch.float64)
    g = torch.Generator().manual_seed(1234)
    from_generator = torch.multinomial(probs, 64, replacement=True, generator=g)
    torch.manual_seed(7)
    from_global = torch.multinomial(probs, 64, replacement=True)
    return {
        'law': {'kind': 'noise-end', 'tau': 1.0},
        'n': 64,
        'generator_seed': 1234,
        'from_generator': from_generator.tolist(),
        'global_seed': 7,
        'from_global': from_global.tolist(),
    }


def loss_weights():
    betas = np.linspace(0.0001, 0.02, T, dtype=np.float64)
    ac = np.cumprod(1.0 - betas, axis=0)
    snr = 1.0 / (1 - ac) - 1  # the fork's GaussianDiffusion.snr
    ts = [0, 1, 99, 250, 499, 750, 999]

    def at(a):
        return [float(a[i]) for i in ts]

    return {
        'schedule': 'linear, np.linspace(1e-4, 0.02, 1000) float64, alphas_cumprod = np.cumprod(1 - betas)',
        't': ts,
        'alphas_cumprod': at(ac),
        'snr': at(snr),
        'p2_k1_g0.5': at(1 / (1 + snr) ** 0.5),
        'p2_k2_g1': at(1 / (2 + snr) ** 1.0),
        'min_snr_code_g5': at(np.minimum(5.0, snr)),
        'min_snr_g5': at(np.minimum(snr, 5.0) / snr),
        'min_snr_code_g1': at(np.minimum(1.0, snr)),
        'min_snr_g1': at(np.minimum(snr, 1.0) / snr),
    }


def main():
    refs = {
        'provenance': f'tools/make_tuning_refs.py; torch {torch.__version__}, numpy {np.__version__}, scipy {scipy.__version__}',
        'T': T,
        'prob_indices': PROB_INDICES,
        'laws': [summary(kind, tau) for kind in ('noise-end', 'data-end') for tau in (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)],
        'draws': draws(),
        # Upper 1e-6 tail of chi-square with 19 degrees of freedom (20 buckets), for the frequency test.
        'chi2_19_isf_1e-6': float(scipy.stats.chi2.isf(1e-6, 19)),
        'loss_weights': loss_weights(),
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    tmp = OUT + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(refs, f, indent=1)
        f.write('\n')
    os.replace(tmp, OUT)
    print(f'wrote {OUT} ({os.path.getsize(OUT)} bytes)')


if __name__ == '__main__':
    main()
