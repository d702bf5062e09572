"""Reference ε̂ for DDPM Studio's Go U-Net, computed with our PyTorch model (unet.py).

Make random weights (every tensor drawn, interchange names, float32 safetensors):
    python3 bench/torchref/ref_eps.py --config CFG.json --make-weights W.safetensors --seed S

Evaluate ε̂(x, t) with those weights (strict load, eval mode, float64 by default):
    python3 bench/torchref/ref_eps.py --config CFG.json --weights W.safetensors \
        --x X.npy --t T.npy --out EPS.npy

CFG.json holds exactly the keys resolution, in_channels, out_ch, ch, ch_mult,
num_res_blocks, attn_resolutions, dropout. X.npy is N×C×H×W (float32 or float64),
T.npy is [N] integers (0..T−1, fed to the embedding as is). EPS.npy is float32
N×out_ch×H×W.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import safetensors_io  # noqa: E402
from unet import model_from_config  # noqa: E402


def load_config(path):
    with open(path) as f:
        return json.load(f)


def random_weights(model, seed):
    """Draw every parameter so that activations stay O(1) (not the official zero init).

    weights of convs / dense layers: N(0, 1/fan_in); GroupNorm scales: U(0.5, 1.5);
    every bias (GroupNorm shifts included): N(0, 0.2²). Drawn in sorted-name order
    from one seeded generator, float32.
    """
    gen = torch.Generator().manual_seed(int(seed))
    shapes = {name: tuple(p.shape) for name, p in model.state_dict().items()}
    out = {}
    for name in sorted(shapes):
        shape = shapes[name]
        if name.endswith(".weight") and len(shape) >= 2:
            fan_in = int(np.prod(shape[1:]))
            t = torch.randn(shape, generator=gen, dtype=torch.float32) * (fan_in ** -0.5)
        elif name.endswith(".weight"):  # GroupNorm gamma
            t = 0.5 + torch.rand(shape, generator=gen, dtype=torch.float32)
        elif name.endswith(".bias"):
            t = 0.2 * torch.randn(shape, generator=gen, dtype=torch.float32)
        else:
            raise ValueError(f"unexpected parameter {name}")
        out[name] = t.numpy()
    return out


def save_eps(model, x, t, out_path, dtype):
    """Runs model (in eval mode, as dtype) on x and t (numpy arrays) and saves ε̂ as float32 .npy."""
    model = model.to(dtype).eval()
    with torch.no_grad():
        eps = model(torch.from_numpy(x.astype(np.float64)).to(dtype), torch.from_numpy(t.astype(np.int64)))
    np.save(out_path, eps.numpy().astype(np.float32))


def load_weights_strict(model, path):
    tensors, _ = safetensors_io.load(path)
    want = {name: tuple(p.shape) for name, p in model.state_dict().items()}
    missing = sorted(set(want) - set(tensors))
    extra = sorted(set(tensors) - set(want))
    badshape = sorted(f"{n}: file {tuple(tensors[n].shape)} vs model {want[n]}"
                      for n in set(want) & set(tensors) if tuple(tensors[n].shape) != want[n])
    if missing or extra or badshape:
        raise SystemExit(f"weights {path} do not match the model:\n  missing {missing}\n"
                         f"  unexpected {extra}\n  mis-shaped {badshape}")
    sd = {n: torch.from_numpy(np.ascontiguousarray(a)) for n, a in tensors.items()}
    model.load_state_dict(sd, strict=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--make-weights", metavar="W.safetensors")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--drop", action="append", default=[], metavar="NAME",
                    help="with --make-weights: leave this tensor out (to test loaders)")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME",
                    help="with --make-weights: add a [1] float32 tensor of this name (to test loaders)")
    ap.add_argument("--weights", metavar="W.safetensors")
    ap.add_argument("--x")
    ap.add_argument("--t")
    ap.add_argument("--out")
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                    help="precision of the forward pass (default float64)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    model = model_from_config(cfg)

    if args.make_weights:
        tensors = random_weights(model, args.seed)
        for name in args.drop:
            if tensors.pop(name, None) is None:
                ap.error(f"--drop {name}: no such tensor")
        for name in args.extra:
            if name in tensors:
                ap.error(f"--extra {name}: already a tensor of the model")
            tensors[name] = np.zeros([1], dtype=np.float32)
        safetensors_io.save(args.make_weights, tensors,
                            metadata={"generator": "bench/torchref/ref_eps.py", "seed": args.seed,
                                      "config": json.dumps(cfg, sort_keys=True)})
        if not args.weights:
            return

    if not (args.weights and args.x and args.t and args.out):
        ap.error("evaluation needs --weights, --x, --t and --out (or use --make-weights)")

    load_weights_strict(model, args.weights)
    dtype = torch.float64 if args.dtype == "float64" else torch.float32

    x = np.load(args.x)
    t = np.load(args.t)
    if x.ndim != 4 or x.shape[1] != cfg["in_channels"]:
        raise SystemExit(f"x has shape {x.shape}, want N×{cfg['in_channels']}×H×W")
    if x.dtype.kind != "f":
        raise SystemExit(f"x has dtype {x.dtype}, want float32")
    if t.ndim != 1 or t.shape[0] != x.shape[0] or t.dtype.kind not in "iu":
        raise SystemExit(f"t has shape {t.shape} dtype {t.dtype}, want [{x.shape[0]}] integers")

    save_eps(model, x, t, args.out, dtype)


if __name__ == "__main__":
    main()
