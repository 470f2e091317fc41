#!/usr/bin/env python3
"""The PyTorch side of `npm run bench:scale`: bench/engine/dit_step.py's training step, with the
scale model given as JSON (--model-json, from bench/scale/configs.ts) registered into its table.

Run by bench/scale/run.ts as a child process; prints dit_step.py's JSON line.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "engine"))
import dit_step  # noqa: E402  (the shared reference step)


def main():
    argv = sys.argv[1:]
    i = argv.index("--model-json")
    spec = json.loads(argv[i + 1])
    del argv[i:i + 2]
    m = spec["model"]
    dit_step.CONFIGS[spec["key"]] = dict(
        input_size=m["inputSize"], in_channels=m["inChannels"], patch_size=m["patchSize"], hidden_size=m["hiddenSize"],
        depth=m["depth"], num_heads=m["numHeads"], batch=spec["batch"], num_classes=m["numClasses"],
    )
    sys.argv = [sys.argv[0]] + argv
    dit_step.main()


if __name__ == "__main__":
    main()
