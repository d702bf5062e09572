"""PyTorch side of scripts/gpu-check.sh: the same U-Net (unet.py) and the same work as
the Go test TestGPUSpeed and TestGPUSampleDDPM, on the same GPU, in float32 without
TF32 (as ours: cuBLAS in its default math mode, no tensor cores).

A training step is forward + L_simple + backward + clip by global norm 1.0 + Adam +
EMA update; a forward pass runs without gradients; DDPM sampling is the official
p_sample_loop with σ² = β ("fixedlarge"). Medians of --steps after --warmup; peak
memory is torch.cuda.max_memory_allocated (the caching allocator's tensors; ours
counts what it allocated from the driver). Prints GPUCHECK lines for the script.

    python3 bench/torchref/gpu_bench.py --preset cifar10 --train-batch 128 --forward-batch 256
"""

import argparse
import statistics
import sys
import time

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from bench import training_step  # noqa: E402
from unet import PRESETS, model_from_config  # noqa: E402


def line(section, what, value, unit):
    print(f"GPUCHECK|{section}|torch|{what}|{value:.4g} {unit}||", flush=True)


def timed(fn, warmup, steps):
    times = []
    for i in range(warmup + steps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cifar10", choices=sorted(PRESETS))
    ap.add_argument("--train-batch", type=int, default=128)
    ap.add_argument("--forward-batch", type=int, default=256)
    ap.add_argument("--sample-n", type=int, default=64)
    ap.add_argument("--sample-steps", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--parts", default="speed,sample")
    a = ap.parse_args()

    if not torch.cuda.is_available():
        print("PyTorch sees no GPU", file=sys.stderr)
        sys.exit(2)
    # Plain float32, as ours: no TF32 in matrix products or cuDNN convolutions.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    torch.manual_seed(0)
    cfg = PRESETS[a.preset]
    model = model_from_config(cfg).to(dev)
    c, r = cfg["in_channels"], cfg["resolution"]
    parts = a.parts.split(",")
    name = f"{a.preset}"

    if "speed" in parts:
        ema = [p.detach().clone() for p in model.parameters()]
        opt = torch.optim.Adam(model.parameters(), lr=2e-4, eps=1e-8)
        n = a.train_batch
        x = torch.randn(n, c, r, r, device=dev)
        eps = torch.randn(n, cfg["out_ch"], r, r, device=dev)
        t = torch.randint(0, 1000, (n,), device=dev)

        def train_step():
            training_step(model, opt, ema, x, eps, t).item()  # ours copies the loss back every step too

        torch.cuda.reset_peak_memory_stats()
        s = timed(train_step, a.warmup, a.steps)
        line("speed", f"{name} training step, batch {n}", s, "s")
        line("speed", f"{name} training step, peak device memory", torch.cuda.max_memory_allocated() / 2**30, "GiB")
        del opt, ema, x, eps, t
        model.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()

        n = a.forward_batch
        x = torch.randn(n, c, r, r)  # on the host, as ours: the input goes up, ε̂ comes down
        t = torch.randint(0, 1000, (n,))
        model.eval()

        def forward():
            with torch.no_grad():
                model(x.to(dev), t.to(dev)).cpu()

        torch.cuda.reset_peak_memory_stats()
        s = timed(forward, a.warmup, a.steps)
        line("speed", f"{name} forward, batch {n}", s, "s")
        line("speed", f"{name} forward, peak device memory", torch.cuda.max_memory_allocated() / 2**30, "GiB")

    if "sample" in parts:
        model.eval()
        T = a.sample_steps
        betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
        alphas = 1 - betas
        ab = torch.cumprod(alphas, 0)
        ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
        coef1 = betas * ab_prev.sqrt() / (1 - ab)
        coef2 = (1 - ab_prev) * alphas.sqrt() / (1 - ab)
        sigma = betas.sqrt()  # fixedlarge: σ² = β (the last step adds no noise)
        n = a.sample_n
        x = torch.randn(n, c, r, r, device=dev)
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            for i in reversed(range(T)):
                t = torch.full((n,), i, device=dev, dtype=torch.long)
                e = model(x, t)
                x0 = ((1 / ab[i]).sqrt() * x - (1 / ab[i] - 1).sqrt() * e).clamp(-1, 1)
                mean = coef1[i] * x0 + coef2[i] * x
                x = mean + (sigma[i] * torch.randn_like(x) if i > 0 else 0)
        torch.cuda.synchronize()
        line("sample", f"DDPM {T} steps, {n} {name} images", time.perf_counter() - start, "s")


if __name__ == "__main__":
    main()
