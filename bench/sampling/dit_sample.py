#!/usr/bin/env python3
"""DDPM sampling with classifier-free guidance in PyTorch: the reference side of `npm run bench:sampling`.

The model is the DiT mirror of bench/engine/dit_step.py (imported, not copied). The diffusion is
written out here as the official DiT code does it (diffusion/gaussian_diffusion.py, respace.py,
sample.py): a linear beta schedule over 1000 steps respaced to --steps, coefficient tables computed
in float64 numpy, `_extract_into_tensor` (index the float64 table, cast to float32, broadcast), a
learned-range variance, eps prediction, clip_denoised=False, and p_sample's
`mean + nonzero_mask * exp(0.5 * log_variance) * noise` with noise drawn at every step including the
last. The model function is forward_with_cfg on the [z; z] batch with labels [y; null].

Run by bench/sampling/run.ts as a child process with an explicit thread environment; it first runs
one short warm-up loop (--warmup-steps respaced steps), then times --loops full loops and prints
one JSON line: {"side": "torch", "images": ..., "seconds": ..., "images_per_s": ..., ...}.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from blas_info import describe_blas  # noqa: E402  (bench/blas_info.py)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "engine"))
from dit_step import DiT  # noqa: E402  (bench/engine/dit_step.py)


# ---- diffusion (the official DiT formulas) ----------------------------------------------------

def linear_betas(num_steps):
    scale = 1000 / num_steps
    return np.linspace(scale * 0.0001, scale * 0.02, num_steps, dtype=np.float64)


def kept_timesteps(num_steps, count):
    """space_timesteps(num_steps, str(count)) for a single section: evenly strided, rounded."""
    stride = 1 if count <= 1 else (num_steps - 1) / (count - 1)
    kept, cur = set(), 0.0
    for _ in range(count):
        kept.add(round(cur))
        cur += stride
    if len(kept) != count:
        raise ValueError(f"cannot keep {count} of {num_steps} steps")
    return kept


class Diffusion:
    """A respaced GaussianDiffusion with learned-range variance and eps prediction (sampling only)."""

    def __init__(self, respaced_steps, base_steps=1000):
        base_ac = np.cumprod(1.0 - linear_betas(base_steps))
        keep = kept_timesteps(base_steps, respaced_steps)
        betas, self.timestep_map, last = [], [], 1.0
        for i, ac in enumerate(base_ac):
            if i in keep:
                betas.append(1 - ac / last)
                last = ac
                self.timestep_map.append(i)
        betas = np.array(betas, dtype=np.float64)
        self.num_timesteps = len(betas)
        ac = np.cumprod(1.0 - betas)
        ac_prev = np.append(1.0, ac[:-1])
        self.log_betas = np.log(betas)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / ac)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / ac - 1)
        self.posterior_variance = betas * (1.0 - ac_prev) / (1.0 - ac)
        self.posterior_log_variance_clipped = np.log(np.append(self.posterior_variance[1], self.posterior_variance[1:]))
        self.posterior_mean_coef1 = betas * np.sqrt(ac_prev) / (1.0 - ac)
        self.posterior_mean_coef2 = (1.0 - ac_prev) * np.sqrt(1.0 - betas) / (1.0 - ac)

    @staticmethod
    def extract(arr, t, shape):
        """_extract_into_tensor: arr[t] (float64 -> float32) broadcast to shape."""
        r = torch.from_numpy(arr).to(device=t.device)[t].float()
        while r.dim() < len(shape):
            r = r[..., None]
        return r + torch.zeros(shape, device=t.device)

    def wrapped(self, model_fn):
        """_WrappedModel: the model sees the original timestep of each respaced index."""
        def fn(x, t, **kwargs):
            ts = torch.tensor(self.timestep_map, device=t.device, dtype=t.dtype)[t]
            return model_fn(x, ts, **kwargs)
        return fn

    def p_mean_variance(self, model_fn, x, t, model_kwargs):
        B, C = x.shape[:2]
        out = self.wrapped(model_fn)(x, t, **model_kwargs)
        out, var_values = torch.split(out, C, dim=1)
        min_log = self.extract(self.posterior_log_variance_clipped, t, x.shape)
        max_log = self.extract(self.log_betas, t, x.shape)
        frac = (var_values + 1) / 2
        log_variance = frac * max_log + (1 - frac) * min_log
        variance = torch.exp(log_variance)
        # clip_denoised=False, no denoised_fn: x_0 from eps as is.
        pred_xstart = (self.extract(self.sqrt_recip_alphas_cumprod, t, x.shape) * x
                       - self.extract(self.sqrt_recipm1_alphas_cumprod, t, x.shape) * out)
        mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x, t)
        return {"mean": mean, "variance": variance, "log_variance": log_variance, "pred_xstart": pred_xstart}

    def q_posterior_mean_variance(self, x_start, x_t, t):
        mean = (self.extract(self.posterior_mean_coef1, t, x_t.shape) * x_start
                + self.extract(self.posterior_mean_coef2, t, x_t.shape) * x_t)
        variance = self.extract(self.posterior_variance, t, x_t.shape)
        log_variance_clipped = self.extract(self.posterior_log_variance_clipped, t, x_t.shape)
        return mean, variance, log_variance_clipped

    def p_sample(self, model_fn, x, t, model_kwargs):
        out = self.p_mean_variance(model_fn, x, t, model_kwargs)
        noise = torch.randn_like(x)
        nonzero_mask = (t != 0).float().view(-1, *([1] * (len(x.shape) - 1)))
        sample = out["mean"] + nonzero_mask * torch.exp(0.5 * out["log_variance"]) * noise
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    def p_sample_loop(self, model_fn, shape, noise, model_kwargs, device):
        img = noise
        for i in reversed(range(self.num_timesteps)):
            t = torch.tensor([i] * shape[0], device=device)
            with torch.no_grad():
                img = self.p_sample(model_fn, img, t, model_kwargs)["sample"]
        return img


def forward_with_cfg(model, x, t, y, cfg_scale):
    """DiT.forward_with_cfg: guidance on the first 3 output channels, as the official model."""
    half = x[: len(x) // 2]
    model_out = model(torch.cat([half, half], dim=0), t, y)
    eps, rest = model_out[:, :3], model_out[:, 3:]
    cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
    half_eps = uncond_eps + cfg_scale * (cond_eps - uncond_eps)
    return torch.cat([torch.cat([half_eps, half_eps], dim=0), rest], dim=1)


# ---- the benchmark ----------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--in-channels", type=int, default=3)
    ap.add_argument("--patch-size", type=int, default=4)
    ap.add_argument("--hidden-size", type=int, default=192)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--num-heads", type=int, default=6)
    ap.add_argument("--num-classes", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8, help="images per loop (the model sees twice as many with CFG)")
    ap.add_argument("--steps", type=int, default=250, help="respaced DDPM steps of a timed loop")
    ap.add_argument("--warmup-steps", type=int, default=5)
    ap.add_argument("--loops", type=int, default=1, help="timed loops")
    ap.add_argument("--cfg", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    if cuda:
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: this PyTorch has no CUDA device")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = False

    model = DiT(input_size=a.input_size, patch_size=a.patch_size, in_channels=a.in_channels, hidden_size=a.hidden_size,
                depth=a.depth, num_heads=a.num_heads, mlp_ratio=4.0, class_dropout_prob=0.1,
                num_classes=a.num_classes, learn_sigma=True).to(dev)
    model.eval()
    n, C, H, K = a.batch, a.in_channels, a.input_size, a.num_classes
    labels = [i % K for i in range(n)]

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def sample(diffusion):
        # sample.py: z = randn; z = cat([z, z]); y = cat([y, null]); p_sample_loop(forward_with_cfg); chunk(2)[0].
        z = torch.randn(n, C, H, H, device=dev)
        y = torch.tensor(labels, device=dev)
        z = torch.cat([z, z], 0)
        y = torch.cat([y, torch.tensor([K] * n, device=dev)], 0)
        def model_fn(x, t, y, cfg_scale):
            # bf16: autocast around the model only, as the TS side; the sampler's math stays float32.
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
                return forward_with_cfg(model, x, t, y, cfg_scale).float()
        samples = diffusion.p_sample_loop(model_fn, z.shape, z, dict(y=y, cfg_scale=a.cfg), dev)
        samples, _ = samples.chunk(2, dim=0)
        return samples

    sample(Diffusion(a.warmup_steps))
    sync()
    diffusion = Diffusion(a.steps)
    c0 = time.process_time()
    t0 = time.perf_counter()
    for _ in range(a.loops):
        out = sample(diffusion)
    sync()
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0
    checksum = out.abs().mean().item()
    images = n * a.loops
    print(json.dumps({
        "side": "torch", "device": a.device, "threads": a.threads, "images": images, "steps": diffusion.num_timesteps,
        "seconds": seconds, "images_per_s": images / seconds, "ms_per_step": seconds * 1000 / (a.loops * diffusion.num_timesteps),
        "cpu_seconds": cpu_seconds, "checksum": checksum, "finite": bool(math.isfinite(checksum)), "version": torch.__version__, "blas": describe_blas(),
    }))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
