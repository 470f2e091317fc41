"""Reference trajectories of torch.optim (Adam, AdamW, SGD) and clip_grad_norm_ for
test/optim.test.ts. Run with Debian's python3-torch: /usr/bin/python3 tools/make_optim_refs.py"""
import json
import os

import torch

torch.set_num_threads(1)


def problem():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(4, 3, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    x = torch.randn(8, 3, generator=g, dtype=torch.float64)
    y = torch.randn(8, 4, generator=g, dtype=torch.float64)
    return w, b, x, y


def run(make_opt, steps=6, clip=None):
    w, b, x, y = problem()
    init = {"w": w.flatten().tolist(), "b": b.tolist(), "x": x.flatten().tolist(), "y": y.flatten().tolist()}
    w.requires_grad_(True)
    b.requires_grad_(True)
    opt = make_opt([w, b])
    norms = []
    for _ in range(steps):
        opt.zero_grad()
        loss = ((x @ w.t() + b - y) ** 2).mean()
        loss.backward()
        if clip is not None:
            norms.append(float(torch.nn.utils.clip_grad_norm_([w, b], clip)))
        opt.step()
    return {"init": init, "w": w.detach().flatten().tolist(), "b": b.detach().tolist(), "norms": norms}


cases = {
    "adamw": run(lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.1)),
    "adam_l2": run(lambda p: torch.optim.Adam(p, lr=0.05, weight_decay=0.1)),
    "adam_amsgrad": run(lambda p: torch.optim.Adam(p, lr=0.05, amsgrad=True)),
    "sgd_momentum": run(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01)),
    "sgd_nesterov": run(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True)),
    "adamw_clip": run(lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.0), clip=0.5),
}
out = os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", "optim", "refs.json")
with open(out, "w") as f:
    json.dump({"torch": torch.__version__, "steps": 6, "cases": cases}, f)
print("wrote", out)
