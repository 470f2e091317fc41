#!/usr/bin/env python3
"""One DiT training step in PyTorch, the reference side of `npm run bench:engine`.

A self-contained minimal DiT with the same structure and the same tensor operations as
src/models/dit.ts (which is a port of facebookresearch/DiT models.py): patch embedding
(Conv2d k = s = patch), fixed sin-cos position table, sinusoidal timestep MLP, label table with
dropout, adaLN-Zero blocks (LayerNorm without affine, fused-qkv attention, tanh-GELU MLP),
final adaLN layer, unpatchify by permute + reshape. The step is: random x / noise / t / y,
forward, MSE of the eps half against the noise, backward, AdamW (lr 1e-4, wd 0, single-tensor
update), zero grads (set to None).

Run by bench/engine/run.ts as a child process with an explicit thread environment; prints one
JSON line: {"side": "torch", "config": ..., "steps": ..., "seconds": ..., "steps_per_s": ...}.
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from blas_info import describe_blas  # noqa: E402  (bench/blas_info.py)
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = {
    # name: (input size, channels, patch, hidden, depth, heads, batch, classes)
    "tiny": dict(input_size=28, in_channels=1, patch_size=4, hidden_size=96, depth=4, num_heads=4, batch=64, num_classes=10),
    "small": dict(input_size=32, in_channels=3, patch_size=2, hidden_size=192, depth=6, num_heads=6, batch=32, num_classes=10),
    "dit-s2": dict(input_size=32, in_channels=4, patch_size=2, hidden_size=384, depth=12, num_heads=6, batch=64, num_classes=1000),
    "dit-b2": dict(input_size=32, in_channels=4, patch_size=2, hidden_size=768, depth=12, num_heads=12, batch=64, num_classes=1000),
}

HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class PatchEmbed(nn.Module):
    def __init__(self, img_size, patch_size, in_chans, embed_dim):
        super().__init__()
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden_size, frequency_embedding_size=256):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size, bias=True),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size, bias=True),
        )
        self.frequency_embedding_size = frequency_embedding_size

    @staticmethod
    def timestep_embedding(t, dim, max_period=10000):
        half = dim // 2
        freqs = (torch.arange(0, half, 1, dtype=torch.float32, device=t.device) * (-math.log(max_period)) / half).exp()
        args = t.unsqueeze(1).float() * freqs.unsqueeze(0)
        return torch.cat([args.cos(), args.sin()], dim=-1)

    def forward(self, t):
        return self.mlp(self.timestep_embedding(t, self.frequency_embedding_size))


class LabelEmbedder(nn.Module):
    def __init__(self, num_classes, hidden_size, dropout_prob):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), hidden_size)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    def forward(self, labels, train):
        if train and self.dropout_prob > 0:
            drop_ids = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob
            labels = torch.where(drop_ids, self.num_classes, labels)
        return self.embedding_table(labels)


class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.select(0, 0), qkv.select(0, 1), qkv.select(0, 2)
        if HAS_SDPA:
            o = F.scaled_dot_product_attention(q, k, v)
        else:
            # The explicit path (timm on torch < 2, and difftune's F.scaledDotProductAttention on 1.13).
            attn = (q * self.scale).matmul(k.transpose(-2, -1))
            attn = F.softmax(attn, -1)
            o = attn.matmul(v)
        return self.proj(o.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, in_features, hidden_features):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    def __init__(self, hidden_size, num_heads, mlp_ratio=4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size, bias=True))

    def forward(self, x, c):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    def __init__(self, hidden_size, patch_size, out_channels):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, bias=True))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


def sincos_2d(embed_dim, grid_size):
    def one_d(dim, pos):
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    gw, gh = np.meshgrid(np.arange(grid_size, dtype=np.float32), np.arange(grid_size, dtype=np.float32))
    return np.concatenate([one_d(embed_dim // 2, gw), one_d(embed_dim // 2, gh)], axis=1)


class DiT(nn.Module):
    def __init__(self, input_size, patch_size, in_channels, hidden_size, depth, num_heads, mlp_ratio=4.0,
                 class_dropout_prob=0.1, num_classes=1000, learn_sigma=True):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.patch_size = patch_size
        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        num_patches = self.x_embedder.num_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, hidden_size), requires_grad=False)
        self.blocks = nn.ModuleList([DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self):
        def _basic_init(module):
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0)

        self.apply(_basic_init)
        grid = int(self.x_embedder.num_patches ** 0.5)
        self.pos_embed.data.copy_(torch.from_numpy(sincos_2d(self.pos_embed.shape[-1], grid)).float().unsqueeze(0))
        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view([w.shape[0], -1]))
        nn.init.constant_(self.x_embedder.proj.bias, 0)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.constant_(block.adaLN_modulation[-1].weight, 0)
            nn.init.constant_(block.adaLN_modulation[-1].bias, 0)
        nn.init.constant_(self.final_layer.adaLN_modulation[-1].weight, 0)
        nn.init.constant_(self.final_layer.adaLN_modulation[-1].bias, 0)
        nn.init.constant_(self.final_layer.linear.weight, 0)
        nn.init.constant_(self.final_layer.linear.bias, 0)

    def unpatchify(self, x):
        c, p = self.out_channels, self.patch_size
        h = w = int(round(x.shape[1] ** 0.5))
        x = x.reshape(x.shape[0], h, w, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(x.shape[0], c, h * p, w * p)

    def forward(self, x, t, y):
        x = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y, self.training)
        for block in self.blocks:
            x = block(x, c)
        return self.unpatchify(self.final_layer(x, c))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="tiny", choices=sorted(CONFIGS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=0, help="timed steps (0: enough for --min-seconds)")
    ap.add_argument("--min-seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    cfg = dict(CONFIGS[a.config])
    batch = cfg.pop("batch")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    if cuda:
        tf32 = a.precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = False

    model = DiT(**cfg).to(dev)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0, foreach=False)
    C, H, K = cfg["in_channels"], cfg["input_size"], cfg["num_classes"]

    def step():
        x = torch.randn(batch, C, H, H, device=dev)
        noise = torch.randn(batch, C, H, H, device=dev)
        t = torch.randint(0, 1000, (batch,), device=dev)
        y = torch.randint(0, K, (batch,), device=dev)
        if a.precision == "bf16":
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16):
                out = model(x, t, y)
                loss = F.mse_loss(out[:, :C], noise)
        else:
            out = model(x, t, y)
            loss = F.mse_loss(out[:, :C], noise)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    for _ in range(a.warmup):
        step()
    sync()
    steps = a.steps
    if steps <= 0:
        t0 = time.perf_counter()
        for _ in range(2):
            step()
        sync()
        per = (time.perf_counter() - t0) / 2
        steps = max(5, math.ceil(a.min_seconds * 1.05 / per))
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    c0 = time.process_time()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "side": "torch", "config": a.config, "device": a.device, "precision": a.precision, "threads": a.threads,
        "steps": steps, "seconds": seconds, "steps_per_s": steps / seconds, "cpu_seconds": cpu_seconds, "sys_seconds": r1.ru_stime - r0.ru_stime,
        "minflt_per_step": (r1.ru_minflt - r0.ru_minflt) / steps,
        "version": torch.__version__, "sdpa": HAS_SDPA,
        "blas": describe_blas(),
    }))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
