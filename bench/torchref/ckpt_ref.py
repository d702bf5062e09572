"""PyTorch checkpoints (torch.save) of our reference U-Net, for weights/ (Go) tests.

Write a checkpoint of random weights (ref_eps.random_weights), in one of the
layouts people publish, and optionally ε̂ of those weights:
    python3 bench/torchref/ckpt_ref.py make --config CFG.json --seed S --out F.ckpt \
        [--layout plain|nested|ema-prefix|module] [--legacy] [--dtype float32|float16|bfloat16|float64] \
        [--dump DIR] [--x X.npy --t T.npy --eps EPS.npy [--fdtype float32|float64] [--eps-resolution R]]

  plain       torch.save(model.state_dict())  (the PyTorch port's model-790000.ckpt)
  nested      {"state_dict": raw, "ema": ema, "step": 7, "optimizer": {"state": {0: {...}}}}
  ema-prefix  raw keys and the same keys prefixed "ema_" in one flat dict
  module      keys prefixed "module." (torch.nn.DataParallel)
  --legacy    the pre-1.6 stream format (_use_new_zipfile_serialization=False)
  --dump DIR  writes DIR/raw.safetensors (and DIR/ema.safetensors) with the exact
              values stored, as float32, for bit-for-bit comparison
  --eps       ε̂ of the weights Go should pick (EMA where there are two sets)
  --eps-resolution R
              evaluate the same weights on R×R images: the model of the config with
              resolution R and its attention at the same levels (the parameters do
              not depend on the image size), to check a 256×256 model quickly

Run several commands in one process (one torch start), each a list of the arguments above:
    python3 bench/torchref/ckpt_ref.py many JOBS.json

Load a checkpoint as a user would and evaluate it (strict, eval mode):
    python3 bench/torchref/ckpt_ref.py eps --config CFG.json --ckpt F.ckpt --x X.npy --t T.npy --out EPS.npy
It loads with torch.load(weights_only=True), which accepts only torch's own
rebuild functions and storages, checks that the keys come in the order of the
model's state_dict(), loads with load_state_dict(strict=True), and runs in float64.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import safetensors_io  # noqa: E402
from ref_eps import random_weights, save_eps  # noqa: E402
from unet import model_from_config  # noqa: E402

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def eps_of(model, sd, x_path, t_path, out_path, dtype):
    model.load_state_dict({k: v.to(torch.float32) for k, v in sd.items()}, strict=True)
    save_eps(model, np.load(x_path), np.load(t_path), out_path, dtype)


def make(args):
    cfg = json.load(open(args.config))
    model = model_from_config(cfg)
    dt = DTYPES[args.dtype]
    raw = {k: torch.from_numpy(v).to(dt) for k, v in random_weights(model, args.seed).items()}
    ema = {k: torch.from_numpy(v).to(dt) for k, v in random_weights(model, args.seed + 1).items()}
    # Keep the state_dict order of the model.
    order = list(model.state_dict().keys())
    raw = {k: raw[k] for k in order}
    ema = {k: ema[k] for k in order}
    if args.layout == "plain":
        obj, picked = raw, raw
    elif args.layout == "nested":
        obj = {"state_dict": raw, "ema": ema, "step": 7,
               "optimizer": {"state": {0: {"step": torch.tensor(7), "exp_avg": torch.zeros(3)}}, "lr": 2e-4}}
        picked = ema
    elif args.layout == "ema-prefix":
        obj = dict(raw)
        obj.update({"ema_" + k: v for k, v in ema.items()})
        picked = ema
    elif args.layout == "module":
        obj, picked = {"module." + k: v for k, v in raw.items()}, raw
    else:
        raise SystemExit(f"unknown layout {args.layout}")
    torch.save(obj, args.out, _use_new_zipfile_serialization=not args.legacy)
    if args.dump:
        os.makedirs(args.dump, exist_ok=True)
        safetensors_io.save(os.path.join(args.dump, "raw.safetensors"),
                            {k: v.to(torch.float32).numpy() for k, v in raw.items()})
        safetensors_io.save(os.path.join(args.dump, "ema.safetensors"),
                            {k: v.to(torch.float32).numpy() for k, v in ema.items()})
    if args.eps:
        if args.eps_resolution:
            r = args.eps_resolution
            cfg = dict(cfg, resolution=r,
                       attn_resolutions=[a * r // cfg["resolution"] for a in cfg["attn_resolutions"]])
            model = model_from_config(cfg)
        eps_of(model, picked, args.x, args.t, args.eps, DTYPES[args.fdtype])


def evaluate(args):
    cfg = json.load(open(args.config))
    model = model_from_config(cfg)
    sd = torch.load(args.ckpt, map_location="cpu", weights_only=True)
    want = list(model.state_dict().keys())
    if list(sd.keys()) != want:
        raise SystemExit(f"keys are not in the order of the model's state_dict: {list(sd.keys())[:5]} …")
    bad = [k for k, v in sd.items() if v.dtype != torch.float32 or not v.is_contiguous()]
    if bad:
        raise SystemExit(f"not contiguous float32: {bad[:5]}")
    eps_of(model, sd, args.x, args.t, args.out, DTYPES[args.fdtype])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make")
    mk.add_argument("--config", required=True)
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("--out", required=True)
    mk.add_argument("--layout", default="plain", choices=["plain", "nested", "ema-prefix", "module"])
    mk.add_argument("--legacy", action="store_true")
    mk.add_argument("--dtype", default="float32", choices=list(DTYPES))
    mk.add_argument("--dump")
    mk.add_argument("--x")
    mk.add_argument("--t")
    mk.add_argument("--eps")
    mk.add_argument("--fdtype", default="float64", choices=["float32", "float64"])
    mk.add_argument("--eps-resolution", type=int, default=0)
    many = sub.add_parser("many")
    many.add_argument("jobs")
    ev = sub.add_parser("eps")
    ev.add_argument("--config", required=True)
    ev.add_argument("--ckpt", required=True)
    ev.add_argument("--x", required=True)
    ev.add_argument("--t", required=True)
    ev.add_argument("--out", required=True)
    ev.add_argument("--fdtype", default="float64", choices=["float32", "float64"])
    for p in (mk, ev):
        p.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if args.cmd == "many":
        for job in json.load(open(args.jobs)):
            main(job)
        return
    torch.set_num_threads(args.threads)
    if args.cmd == "make":
        make(args)
    else:
        evaluate(args)


if __name__ == "__main__":
    main()
