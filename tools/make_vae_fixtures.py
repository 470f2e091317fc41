#!/usr/bin/env python3
"""Write the small ldm-layout checkpoint fixture for test/vae.test.ts.

Run with a Python that has torch (tested with Debian's torch 1.13):
    python3 tools/make_vae_fixtures.py
Writes test/fixtures/vae/ldm-sd-slice.ckpt: a torch.save'd Stable Diffusion style training
checkpoint ({'state_dict': ..., 'global_step', 'hyper_parameters': argparse.Namespace}) whose
state_dict holds a few VAE tensors under first_stage_model. (ldm names, attention projections
as [C, C, 1, 1] 1x1 convs, tiny shapes), one UNet tensor and one loss.* tensor. Values:
tensor number k (in the order below), element i -> float32(0.01 * sin(0.37 * i + 1.3 * k)),
which the test recomputes. The file is committed, so CI needs no torch.
"""
import argparse
import collections
import math
import os

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'vae')

TENSORS = [
    ('first_stage_model.encoder.down.0.block.0.nin_shortcut.weight', [4, 2, 1, 1]),
    ('first_stage_model.encoder.mid.attn_1.q.weight', [3, 3, 1, 1]),
    ('first_stage_model.encoder.mid.attn_1.norm.bias', [3]),
    ('first_stage_model.decoder.up.0.upsample.conv.bias', [2]),
    ('first_stage_model.decoder.norm_out.weight', [2]),
    ('first_stage_model.loss.logvar', []),
    ('model.diffusion_model.out.2.bias', [4]),
]


def formula(k, shape):
    n = math.prod(shape)
    return torch.tensor([0.01 * math.sin(0.37 * i + 1.3 * k) for i in range(n)], dtype=torch.float64).float().reshape(shape)


def main():
    os.makedirs(OUT, exist_ok=True)
    sd = collections.OrderedDict((key, formula(k, shape)) for k, (key, shape) in enumerate(TENSORS))
    ckpt = {'state_dict': sd, 'global_step': 470000, 'hyper_parameters': argparse.Namespace(base_learning_rate=1e-4)}
    torch.save(ckpt, os.path.join(OUT, 'ldm-sd-slice.ckpt'))


if __name__ == '__main__':
    main()
