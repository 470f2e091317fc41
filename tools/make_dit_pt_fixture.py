"""Writes test/fixtures/dit/train_ckpt.pt: the dit-ref fixture weights saved the way DiT's
train.py saves checkpoints ({"model", "ema", "opt", "args"}), so the .pt loading path is tested
on a real torch.save file. "ema" shares every tensor with "model" except final_layer.linear.bias,
which is doubled, so a test can tell which one was loaded. Run with Debian's python3-torch:
/usr/bin/python3 tools/make_dit_pt_fixture.py"""
import argparse
import json
import os
import struct

import torch

here = os.path.dirname(os.path.abspath(__file__))
src = os.path.join(here, "..", "..", "shared", "fixtures", "dit-ref", "model.safetensors")
out = os.path.join(here, "..", "test", "fixtures", "dit", "train_ckpt.pt")

with open(src, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    data = f.read()
model = {}
for name, info in header.items():
    if name == "__metadata__":
        continue
    assert info["dtype"] == "F32"
    begin, end = info["data_offsets"]
    model[name] = torch.frombuffer(bytearray(data[begin:end]), dtype=torch.float32).reshape(info["shape"]).clone()
ema = dict(model)
ema["final_layer.linear.bias"] = model["final_layer.linear.bias"] * 2
args = argparse.Namespace(model="DiT-S/2", image_size=256, num_classes=10, global_batch_size=256)
torch.save({"model": model, "ema": ema, "opt": {"state": {}, "param_groups": [{"lr": 1e-4}]}, "args": args}, out)
print("wrote", out, os.path.getsize(out), "bytes")
