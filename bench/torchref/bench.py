"""PyTorch side of `make bench`: the same U-Net (unet.py), the same work as
`ddpm-studio bench`, timed the same way.

A training step is forward + L_simple + backward + clip by global norm 1.0 +
Adam + EMA update, on random x_t, t and ε; a forward pass runs without
gradients (as in sampling). Reports medians over --steps after --warmup steps,
and the peak resident memory of this process (getrusage), as one JSON line,
with the BLAS and kernels torch runs ("blas").

    python3 bench/torchref/bench.py --preset mnist --batch 64 --threads 2
"""

import argparse
import ctypes
import json
import re
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from unet import PRESETS, model_from_config  # noqa: E402


def blas_info():
    """One line: the BLAS torch was built with and the kernels it runs.

    Debian's torch does convolutions with oneDNN (MKL-DNN), which picks its own
    instruction set, and links libblas.so.3, which Debian's alternatives point
    to OpenBLAS; an OpenBLAS found loaded in this process says its core.
    """
    cfg = torch.__config__.show()
    parts = []
    for line in cfg.splitlines():
        line = line.strip(" -")
        if line.startswith(("Intel(R) MKL-DNN", "oneDNN", "Intel(R) Math Kernel", "CPU capability usage")):
            parts.append(line)
    m = re.search(r"BLAS_INFO=([^,\s]+)", cfg)
    if m:
        parts.append("BLAS_INFO=" + m.group(1))
    with open("/proc/self/maps") as f:
        libs = sorted({ln.split()[-1] for ln in f if "blas" in ln.rsplit("/", 1)[-1]})
    for path in libs:
        try:
            lib = ctypes.CDLL(path)  # already loaded: the same handle
            lib.openblas_get_config.restype = ctypes.c_char_p
            lib.openblas_get_corename.restype = ctypes.c_char_p
        except (OSError, AttributeError):
            continue
        parts.append("%s, core %s (%s)" % (lib.openblas_get_config().decode(),
                                           lib.openblas_get_corename().decode(), path.rsplit("/", 1)[-1]))
        break
    return "; ".join(parts)


def training_step(model, opt, ema, x, eps, t):
    """One step as ours takes it: L_simple, backward, global-norm clip 1.0, Adam, EMA 0.9999.
    Returns the loss tensor."""
    model.train()
    opt.zero_grad(set_to_none=True)
    loss = ((eps - model(x, t)) ** 2).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    with torch.no_grad():
        for e, p in zip(ema, model.parameters()):
            e.mul_(0.9999).add_(p, alpha=1 - 0.9999)
    return loss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="mnist", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = PRESETS[a.preset]
    model = model_from_config(cfg)
    ema = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=2e-4, eps=1e-8)
    n, c, r = a.batch, cfg["in_channels"], cfg["resolution"]
    x = torch.randn(n, c, r, r)
    eps = torch.randn(n, cfg["out_ch"], r, r)
    t = torch.randint(0, 1000, (n,))

    def train_step():
        training_step(model, opt, ema, x, eps, t)

    def forward():
        model.eval()
        with torch.no_grad():
            model(x, t)

    def timed(fn):
        for _ in range(a.warmup):
            fn()
        ts = []
        for _ in range(a.steps):
            s = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - s)
        return statistics.median(ts)

    train = timed(train_step)
    peak_train = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fwd = timed(forward)
    print(json.dumps({
        "impl": "pytorch " + torch.__version__, "preset": a.preset, "batch": n, "threads": a.threads,
        "train_step_s": train, "train_images_per_s": n / train,
        "forward_s": fwd, "forward_images_per_s": n / fwd,
        "peak_rss_train_mb": peak_train, "blas": blas_info(),
    }))


if __name__ == "__main__":
    main()
