"""Reference training steps: PyTorch autograd (float64) on the model of unet.py, and the
optimizer side written from the official TensorFlow code's semantics, for
compute/trainref_test.go.

Each step starts from a given state (weights θ, Adam's m and v, the EMA shadow: those
of the Go trainer before that step), so that the comparison measures one step's
round-off, not the drift of two runs apart. Step k (0-based; s = k is TF's global_step
before the step) is:

  loss     = mean((ε − ε_θ(x_t, t))²)              the dropout of every ResnetBlock replaced
                                                   by multiplication with the given mask
  g        = ∂loss/∂θ                              torch.autograd, float64
  norm     = √(Σ g²)                               tf.clip_by_global_norm:
  g_c      = g · clip · min(1/norm, 1/clip)          (no clipping when clip = 0)
  lr_s     = lr · min((s + offset)/warmup, 1)      diffusion_tf/utils.py get_warmed_up_lr with
                                                   offset 0; see --lr-offset
  m, v     = β1 m + (1−β1) g_c, β2 v + (1−β2) g_c²  tf.train.AdamOptimizer (ApplyAdam),
  θ       −= lr_s √(1−β2^(s+1))/(1−β1^(s+1)) · m/(√v + ε)   ε outside the bias correction
  d        = min(decay, (1+n)/(10+n))              tf.train.ExponentialMovingAverage(decay,
  shadow  −= (1 − d)(shadow − θ)                   num_updates=n), applied to the new θ

The learning-rate offset and the EMA's num_updates are options because the official DDPM
code and our Go trainer differ there on purpose (compute/doc.go):
  --lr-offset 0  official: lr · min(s/warmup, 1), so the first step runs at rate 0;
  --lr-offset 1  ours: lr · min((s+1)/warmup, 1).
  --ema pre      num_updates = s, the global step before the step's increment (ours);
  --ema post     num_updates = s + 1, the global step after apply_gradients' increment;
  --ema ddpm     the official make_ema (diffusion_tf/tpu_utils/tpu_utils.py): no num_updates,
                 decay = 1e-10 while the global step is < 1, else decay.

Usage:
  python3 ref_train.py --config CFG.json --optim OPT.json --state DIR --steps K --out DIR

OPT.json: {"lr", "warmup", "beta1", "beta2", "eps", "grad_clip", "ema_decay"} (OptimConfig's
JSON keys). The state DIR holds, for each step k: w_k, m_k, v_k, ema_k.safetensors (the
state before the step, one tensor per parameter under its interchange name), x_k.npy
(the N·C·H·W values of x_t, float32), t_k.npy (int64 [N]), eps_k.npy (float32, like x)
and mask_k.npy (float32: the masks of the step's dropout layers one after the other, in
the order the forward pass applies them, each in N×C×H×W order). Writes to --out, for
each step k, float32 safetensors files like the state's: grad_k, clipped_k, m_k, v_k
(after the step), dw_k (the change of the weights) and dema_k (the change of the EMA);
and summary.json: per step loss, norm, lr, ema_decay.
"""
import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import safetensors_io  # noqa: E402
from ref_eps import load_config  # noqa: E402
from unet import ResnetBlock, model_from_config  # noqa: E402


class GivenMasks:
    """Hands out consecutive pieces of one flat array of masks, in call order."""

    def __init__(self):
        self.data, self.used = None, 0

    def load(self, data):
        self.data, self.used = torch.from_numpy(data.astype(np.float64)), 0

    def take(self, shape):
        n = math.prod(shape)
        if self.used + n > self.data.numel():
            raise SystemExit(f"masks: {self.data.numel()} values given, the forward pass wants more")
        m = self.data[self.used:self.used + n].reshape(shape)
        self.used += n
        return m


class MaskDropout(nn.Module):
    """Dropout by a given mask (values 0 or 1/(1−p)), for the test only."""

    def __init__(self, masks):
        super().__init__()
        self.masks = masks

    def forward(self, x):
        return x * self.masks.take(tuple(x.shape))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--optim", required=True)
    ap.add_argument("--state", required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--lr-offset", type=int, choices=[0, 1], default=0)
    ap.add_argument("--ema", choices=["pre", "post", "ddpm"], default="ddpm")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    with open(args.optim) as f:
        opt = json.load(f)

    model = model_from_config(cfg).double().train()
    masks = GivenMasks()
    for mod in model.modules():
        if isinstance(mod, ResnetBlock):
            mod.dropout = MaskDropout(masks)
    params = dict(model.named_parameters())
    names = sorted(params)
    plist = [params[n] for n in names]

    lr, warmup = float(opt["lr"]), int(opt["warmup"])
    b1, b2, eps_adam = float(opt["beta1"]), float(opt["beta2"]), float(opt["eps"])
    clip, decay = float(opt["grad_clip"]), float(opt["ema_decay"])

    summary = {"loss": [], "norm": [], "lr": [], "ema_decay": []}
    for s in range(args.steps):
        def load(name):
            return np.load(os.path.join(args.state, f"{name}_{s}.npy"))

        def load_state(name):
            path = os.path.join(args.state, f"{name}_{s}.safetensors")
            tensors, _ = safetensors_io.load(path)
            if sorted(tensors) != names:
                raise SystemExit(f"{path}: names differ from the model's: only in the file "
                                 f"{sorted(set(tensors) - set(names))}, only in the model {sorted(set(names) - set(tensors))}")
            out = []
            for n, p in zip(names, plist):
                a = tensors[n]
                if tuple(a.shape) != tuple(p.shape):
                    raise SystemExit(f"{path}: {n} has shape {a.shape}, the model {tuple(p.shape)}")
                out.append(torch.from_numpy(a.astype(np.float64)))
            return out

        with torch.no_grad():
            for p, w in zip(plist, load_state("w")):
                p.copy_(w)
        w_before = [p.detach().clone() for p in plist]
        m, v, shadow = load_state("m"), load_state("v"), load_state("ema")
        shadow_before = [e.clone() for e in shadow]

        t = torch.from_numpy(load("t").astype(np.int64))
        n, c, r = t.shape[0], cfg["in_channels"], cfg["resolution"]
        x = torch.from_numpy(load("x").astype(np.float64).reshape(n, c, r, r))
        eps = torch.from_numpy(load("eps").astype(np.float64).reshape(n, cfg["out_ch"], r, r))
        masks.load(load("mask"))

        for p in plist:
            p.grad = None
        loss = torch.mean((eps - model(x, t)) ** 2)
        loss.backward()
        if masks.used != masks.data.numel():
            raise SystemExit(f"step {s}: {masks.data.numel()} mask values given, the forward pass used {masks.used}")
        g = [p.grad.detach().clone() for p in plist]

        norm = math.sqrt(sum(float((gi * gi).sum()) for gi in g))
        scale = clip * min(1.0 / norm, 1.0 / clip) if clip > 0 else 1.0
        gc = [gi * scale for gi in g]

        lr_s = lr * min((s + args.lr_offset) / warmup, 1.0) if warmup > 0 else lr
        step = s + 1  # TF's beta1_power = β1^step at this update
        lr_t = lr_s * math.sqrt(1 - b2 ** step) / (1 - b1 ** step)
        with torch.no_grad():
            for i, p in enumerate(plist):
                m[i] = b1 * m[i] + (1 - b1) * gc[i]
                v[i] = b2 * v[i] + (1 - b2) * gc[i] * gc[i]
                p -= lr_t * m[i] / (torch.sqrt(v[i]) + eps_adam)

        if args.ema == "ddpm":
            d = 1e-10 if s < 1 else decay
        else:
            nu = s if args.ema == "pre" else s + 1
            d = min(decay, (1.0 + nu) / (10.0 + nu))
        with torch.no_grad():
            for i, p in enumerate(plist):
                shadow[i] -= (1 - d) * (shadow[i] - p)

        def save(name, tensors):
            safetensors_io.save(os.path.join(args.out, f"{name}_{s}.safetensors"),
                                {n: tt.detach().numpy().astype(np.float32) for n, tt in zip(names, tensors)})
        save("grad", g)
        save("clipped", gc)
        save("m", m)
        save("v", v)
        save("dw", [p.detach() - w0 for p, w0 in zip(plist, w_before)])
        save("dema", [e - e0 for e, e0 in zip(shadow, shadow_before)])
        summary["loss"].append(float(loss))
        summary["norm"].append(norm)
        summary["lr"].append(lr_s)
        summary["ema_decay"].append(d)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f)


if __name__ == "__main__":
    main()
