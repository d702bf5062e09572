"""Diffusers folders made and read with our independent UNet2DModel (diffusers_unet.py).

Make a folder of random weights (ref_eps.random_weights over diffusers' names), and
optionally ε̂ of those weights:
    python3 bench/torchref/diffusers_ref.py make --unet-config CONFIG.json [--scheduler-config S.json] \
        --seed S --out DIR [--weights safetensors|bin] [--attn-names new|old] [--layout pipeline|unet] \
        [--x X.npy --t T.npy --eps EPS.npy]
  pipeline: DIR/model_index.json, DIR/unet/{config.json, weights}, DIR/scheduler/scheduler_config.json
  unet:     DIR/config.json and the weights only
  --attn-names old writes query/key/value/proj_attn (the published google/ddpm-* files),
  new writes to_q/to_k/to_v/to_out.0 (diffusers ≥ 0.14).

Load a folder as diffusers would (config.json decides the model; old attention names are
renamed as diffusers' _convert_deprecated_attention_blocks does; load_state_dict(strict=True))
and evaluate it (float64 unless --fdtype float32):
    python3 bench/torchref/diffusers_ref.py eps --folder DIR --x X.npy --t T.npy --out EPS.npy [--fdtype float32]

Run several commands in one process (one torch start), each a list of the arguments above
(or "ckpt" followed by a ckpt_ref.py command):
    python3 bench/torchref/diffusers_ref.py many JOBS.json

Print the tensor names and shapes a config gives, one "name shape" per line, sorted:
    python3 bench/torchref/diffusers_ref.py names --unet-config CONFIG.json [--attn-names old] [--out FILE]
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import safetensors_io  # noqa: E402
from diffusers_unet import UNet2DModel, to_new_names, to_old_names  # noqa: E402
from ref_eps import random_weights, save_eps  # noqa: E402


def forward(model, x_path, t_path, out_path, dtype):
    dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    save_eps(model, np.load(x_path), np.load(t_path), out_path, dtype)


def make(args):
    cfg = json.load(open(args.unet_config))
    model = UNet2DModel(cfg)
    sd = {k: torch.from_numpy(v) for k, v in random_weights(model, args.seed).items()}
    sd = {k: sd[k] for k in model.state_dict()}
    model.load_state_dict(sd, strict=True)
    out = to_old_names(sd) if args.attn_names == "old" else sd
    unet = args.out if args.layout == "unet" else os.path.join(args.out, "unet")
    os.makedirs(unet, exist_ok=True)
    with open(os.path.join(unet, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    if args.weights == "safetensors":
        safetensors_io.save(os.path.join(unet, "diffusion_pytorch_model.safetensors"),
                            {k: v.numpy() for k, v in out.items()}, metadata={"format": "pt"})
    else:
        torch.save(out, os.path.join(unet, "diffusion_pytorch_model.bin"))
    if args.layout == "pipeline":
        with open(os.path.join(args.out, "model_index.json"), "w") as f:
            json.dump({"_class_name": "DDPMPipeline", "_diffusers_version": "0.1.1",
                       "scheduler": ["diffusers", "DDPMScheduler"], "unet": ["diffusers", "UNet2DModel"]}, f, indent=2)
        if args.scheduler_config:
            os.makedirs(os.path.join(args.out, "scheduler"), exist_ok=True)
            with open(args.scheduler_config) as src, \
                    open(os.path.join(args.out, "scheduler", "scheduler_config.json"), "w") as dst:
                dst.write(src.read())
    if args.eps:
        forward(model, args.x, args.t, args.eps, args.fdtype)


def load_folder(folder):
    unet = os.path.join(folder, "unet") if os.path.exists(os.path.join(folder, "model_index.json")) else folder
    cfg = json.load(open(os.path.join(unet, "config.json")))
    if cfg.get("_class_name") != "UNet2DModel":
        raise SystemExit(f"config.json: _class_name {cfg.get('_class_name')}")
    model = UNet2DModel(cfg)
    st = os.path.join(unet, "diffusion_pytorch_model.safetensors")
    if os.path.exists(st):
        tensors, meta = safetensors_io.load(st)
        sd = {k: torch.from_numpy(v) for k, v in tensors.items()}
    else:
        sd = torch.load(os.path.join(unet, "diffusion_pytorch_model.bin"), map_location="cpu", weights_only=True)
    model.load_state_dict(to_new_names(sd), strict=True)
    return model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make")
    mk.add_argument("--unet-config", required=True)
    mk.add_argument("--scheduler-config")
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("--out", required=True)
    mk.add_argument("--weights", default="safetensors", choices=["safetensors", "bin"])
    mk.add_argument("--attn-names", default="new", choices=["new", "old"])
    mk.add_argument("--layout", default="pipeline", choices=["pipeline", "unet"])
    mk.add_argument("--x")
    mk.add_argument("--t")
    mk.add_argument("--eps")
    ev = sub.add_parser("eps")
    ev.add_argument("--folder", required=True)
    ev.add_argument("--x", required=True)
    ev.add_argument("--t", required=True)
    ev.add_argument("--out", required=True)
    nm = sub.add_parser("names")
    nm.add_argument("--unet-config", required=True)
    nm.add_argument("--attn-names", default="new", choices=["new", "old"])
    nm.add_argument("--out", help="write the list here instead of to standard output")
    many = sub.add_parser("many")
    many.add_argument("jobs")
    for p in (mk, ev):
        p.add_argument("--fdtype", default="float64", choices=["float32", "float64"])
    for p in (mk, ev, nm):
        p.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if args.cmd == "many":
        for job in json.load(open(args.jobs)):
            if job[0] == "ckpt":  # a ckpt_ref.py command
                import ckpt_ref
                ckpt_ref.main(job[1:])
            else:
                main(job)
        return
    torch.set_num_threads(args.threads)
    if args.cmd == "make":
        make(args)
    elif args.cmd == "eps":
        forward(load_folder(args.folder), args.x, args.t, args.out, args.fdtype)
    else:
        sd = UNet2DModel(json.load(open(args.unet_config))).state_dict()
        if args.attn_names == "old":
            sd = to_old_names(sd)
        lines = "".join(k + " [" + ",".join(str(d) for d in sd[k].shape) + "]\n" for k in sorted(sd))
        if args.out:
            with open(args.out, "w") as f:
                f.write(lines)
        else:
            sys.stdout.write(lines)


if __name__ == "__main__":
    main()
