"""Self-test of the PyTorch reference (no Go needed):

    /usr/bin/python3 bench/torchref/selftest.py

Checks the parameter counts, a sample of the interchange names, the safetensors
round trip, that strict loading rejects foreign weights, and that float32 and
float64 forwards agree (the round-off floor for the Go comparison).
"""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import ref_eps  # noqa: E402
import safetensors_io  # noqa: E402
from unet import PRESETS, model_from_config, num_params  # noqa: E402

COUNTS = {"mnist": 1_623_169, "cifar10": 35_746_307, "celebahq256": 113_673_219}

CIFAR10_NAMES = [
    ("temb.dense.0.weight", (512, 128)), ("temb.dense.1.bias", (512,)),
    ("conv_in.weight", (128, 3, 3, 3)),
    ("down.0.block.0.norm1.weight", (128,)), ("down.0.block.0.temb_proj.weight", (128, 512)),
    ("down.1.block.0.nin_shortcut.weight", (256, 128, 1, 1)),
    ("down.1.attn.1.proj_out.bias", (256,)), ("down.1.attn.0.q.weight", (256, 256, 1, 1)),
    ("down.2.downsample.conv.weight", (256, 256, 3, 3)),
    ("mid.block_1.conv2.weight", (256, 256, 3, 3)), ("mid.attn_1.k.weight", (256, 256, 1, 1)),
    ("up.0.block.2.nin_shortcut.weight", (128, 256, 1, 1)), ("up.3.block.0.conv1.weight", (256, 512, 3, 3)),
    ("up.1.attn.2.v.bias", (256,)), ("up.3.upsample.conv.weight", (256, 256, 3, 3)),
    ("norm_out.bias", (128,)), ("conv_out.weight", (3, 128, 3, 3)),
]
CIFAR10_ABSENT = ["down.3.downsample.conv.weight", "up.0.upsample.conv.weight",
                  "down.0.attn.0.q.weight", "up.2.attn.0.q.weight", "down.0.block.0.nin_shortcut.weight"]


def main():
    torch.set_num_threads(1)
    failures = []

    def check(ok, msg):
        print(("ok   " if ok else "FAIL ") + msg)
        if not ok:
            failures.append(msg)

    for name, want in COUNTS.items():
        n = num_params(model_from_config(PRESETS[name]))
        check(n == want, f"{name}: {n:,} parameters (want {want:,})")

    sd = model_from_config(PRESETS["cifar10"]).state_dict()
    for key, shape in CIFAR10_NAMES:
        check(key in sd and tuple(sd[key].shape) == shape, f"cifar10 has {key} {shape}")
    for key in CIFAR10_ABSENT:
        check(key not in sd, f"cifar10 has no {key}")

    with tempfile.TemporaryDirectory() as d:
        cfg = PRESETS["tiny"]
        cpath = os.path.join(d, "tiny.json")
        with open(cpath, "w") as f:
            json.dump(cfg, f)
        wpath = os.path.join(d, "w.safetensors")
        ref_eps.main(["--config", cpath, "--make-weights", wpath, "--seed", "3"])
        w, meta = safetensors_io.load(wpath)
        model = model_from_config(cfg)
        again = ref_eps.random_weights(model, 3)
        check(set(w) == set(model.state_dict()) and all(
            w[k].dtype == np.float32 and np.array_equal(w[k], again[k]) for k in w),
            "weights round-trip through safetensors, deterministic per seed")
        check(meta.get("seed") == "3", "metadata stored")

        bad = dict(cfg, num_res_blocks=2)
        bpath = os.path.join(d, "bad.json")
        with open(bpath, "w") as f:
            json.dump(bad, f)
        rejected = False
        try:
            ref_eps.load_weights_strict(model_from_config(bad), wpath)
        except SystemExit:
            rejected = True
        check(rejected, "strict load rejects weights of another architecture")

        rng = np.random.default_rng(0)
        np.save(os.path.join(d, "x.npy"), rng.standard_normal((3, 1, 16, 16)).astype(np.float32))
        np.save(os.path.join(d, "t.npy"), np.array([0, 17, 999], dtype=np.int64))
        outs = {}
        for dt in ("float64", "float32"):
            out = os.path.join(d, f"eps_{dt}.npy")
            ref_eps.main(["--config", cpath, "--weights", wpath, "--x", os.path.join(d, "x.npy"),
                          "--t", os.path.join(d, "t.npy"), "--out", out, "--dtype", dt])
            outs[dt] = np.load(out).astype(np.float64)
        a, b = outs["float64"], outs["float32"]
        rel = np.linalg.norm(b - a) / np.linalg.norm(a)
        check(a.shape == (3, 1, 16, 16) and np.isfinite(a).all() and 0.1 < a.std() < 10,
              f"eps shape {a.shape}, std {a.std():.3f}")
        check(rel < 1e-5, f"float32 vs float64 forward: relative difference {rel:.2e}")

    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
