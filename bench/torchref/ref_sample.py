"""Reference DDPM and DDIM samplers in NumPy float64, for diffusion/samplerref_test.go.

Written from the official code and the DDIM paper, not from our Go:

- DDPM is the official ``p_sample_loop`` (hojonathanho/diffusion,
  diffusion_tf/diffusion_utils_2.py, GaussianDiffusion2 with model_mean_type
  'eps', clip_denoised=True): the tables of ``__init__``, then for t = T−1 … 0
      x̂0   = clip(sqrt_recip_alphas_cumprod[t] x − sqrt_recipm1_alphas_cumprod[t] ε̂, −1, 1)
      mean = posterior_mean_coef1[t] x̂0 + posterior_mean_coef2[t] x
      x    = mean + [t ≠ 0] exp(½ model_log_variance[t]) z
  with model_log_variance = log(append(posterior_variance[1], betas[1:])) for
  'fixedlarge' and posterior_log_variance_clipped for 'fixedsmall'.
- DDIM is Song, Meng & Ermon (2020), eq. 12 with σ_t(η) of eq. 16, on the
  "uniform" sub-sequence of their code (ermongroup/ddim: seq = range(0, T, T // steps)),
  x̂0 clipped to [−1, 1] and ε re-derived from the clipped x̂0 as in
  improved-diffusion's ddim_sample:
      ε'   = (sqrt_recip_alphas_cumprod[t] x − x̂0) / sqrt_recipm1_alphas_cumprod[t]
      σ    = η √((1 − ᾱ_prev)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev)
      x    = √ᾱ_prev x̂0 + √(1 − ᾱ_prev − σ²) ε' + [t ≠ 0] σ z
  with ᾱ_prev = 1 after the last step.

The network is the fake of the Go test (the same function on both sides):
    ε̂(x, t)[n, j] = tanh(a x[n, j] + b t/T + c ((j mod 5) − 2)),
j the index of the value within its image.

Usage:
    python3 ref_sample.py --spec SPEC.json --betas B.npy --xT X.npy [--noise Z.npy] --out DIR

SPEC.json: {"sampler": "ddpm" | "ddim", "variance": "fixedlarge" | "fixedsmall" (ddpm),
"steps": k, "eta": η (ddim), "shape": [N, C, H, W], "net": {"a": …, "b": …, "c": …}}.
B.npy: float64 [T]; X.npy: the N·C·H·W values of x_T (any float type, any shape, C
order); Z.npy: float64, the K·N·C·H·W values of the noise of the K steps that add
noise, in the order they use it (no file when K = 0, as for DDIM with η = 0). Writes DIR/t.npy
(int64 [steps], the timestep of each network evaluation), DIR/xt.npy (float64
[steps, N, C, H, W], the network's input at each step), DIR/x0.npy (float64
[steps, N, C, H, W], the clipped x̂0 of each step) and DIR/out.npy (the sample).
It exits with an error if the noise is not used up exactly.
"""
import argparse
import json
import sys

import numpy as np


class Tables:
    """The float64 tables of GaussianDiffusion2.__init__ (diffusion_utils_2.py)."""

    def __init__(self, betas):
        betas = np.asarray(betas, dtype=np.float64)
        assert betas.ndim == 1 and (betas > 0).all() and (betas <= 1).all()
        self.T = betas.shape[0]
        self.betas = betas
        alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(alphas, axis=0)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_log_variance_clipped = np.log(
            np.append(self.posterior_variance[1], self.posterior_variance[1:]))
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)

    def model_log_variance(self, variance):
        # p_mean_variance: "for fixedlarge, we set the initial (log-)variance like so to get a
        # better decoder log likelihood".
        if variance == "fixedlarge":
            return np.log(np.append(self.posterior_variance[1], self.betas[1:]))
        if variance == "fixedsmall":
            return self.posterior_log_variance_clipped
        raise ValueError(f"variance {variance!r}")

    def predict_xstart_from_eps(self, x, t, eps):
        return self.sqrt_recip_alphas_cumprod[t] * x - self.sqrt_recipm1_alphas_cumprod[t] * eps

    def predict_eps_from_xstart(self, x, t, x0):
        return (self.sqrt_recip_alphas_cumprod[t] * x - x0) / self.sqrt_recipm1_alphas_cumprod[t]


def fake_net(net, T):
    a, b, c = float(net["a"]), float(net["b"]), float(net["c"])

    def eps(x, t):
        per = x[0].size
        phase = c * (np.arange(per) % 5 - 2).reshape(x.shape[1:])
        return np.tanh(a * x + b * t / T + phase[None])

    return eps


class Noise:
    def __init__(self, z):
        self.z, self.used = z, 0

    def next(self):
        if self.used >= self.z.shape[0]:
            raise SystemExit(f"the sampler wants noise for step {self.used + 1}; only {self.z.shape[0]} given")
        self.used += 1
        return self.z[self.used - 1]


def ddpm(tab, net, x, variance, noise):
    logv = tab.model_log_variance(variance)
    ts, xs, x0s = [], [], []
    for t in reversed(range(tab.T)):
        ts.append(t)
        xs.append(x.copy())
        x0 = np.clip(tab.predict_xstart_from_eps(x, t, net(x, t)), -1.0, 1.0)
        x0s.append(x0)
        mean = tab.posterior_mean_coef1[t] * x0 + tab.posterior_mean_coef2[t] * x
        x = mean + (np.exp(0.5 * logv[t]) * noise.next() if t != 0 else 0.0)
    return ts, xs, x0s, x


def ddim(tab, net, x, steps, eta, noise):
    if tab.T % steps != 0:
        raise SystemExit(f"steps {steps} does not divide T = {tab.T}: the uniform sub-sequence is ambiguous")
    seq = list(range(0, tab.T, tab.T // steps))
    ts, xs, x0s = [], [], []
    for i in reversed(range(len(seq))):
        t = seq[i]
        ab = tab.alphas_cumprod[t]
        ab_prev = tab.alphas_cumprod[seq[i - 1]] if i > 0 else 1.0
        ts.append(t)
        xs.append(x.copy())
        x0 = np.clip(tab.predict_xstart_from_eps(x, t, net(x, t)), -1.0, 1.0)
        x0s.append(x0)
        eps = tab.predict_eps_from_xstart(x, t, x0)
        sigma = eta * np.sqrt((1 - ab_prev) / (1 - ab)) * np.sqrt(1 - ab / ab_prev)
        x = np.sqrt(ab_prev) * x0 + np.sqrt(1 - ab_prev - sigma ** 2) * eps
        if t != 0 and sigma > 0:
            x = x + sigma * noise.next()
    return ts, xs, x0s, x


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", required=True)
    ap.add_argument("--betas", required=True)
    ap.add_argument("--xT", required=True)
    ap.add_argument("--noise", help="omit when no step adds noise (DDIM with η = 0)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    with open(args.spec) as f:
        spec = json.load(f)
    tab = Tables(np.load(args.betas))
    shape = tuple(int(d) for d in spec["shape"])
    x = np.load(args.xT).astype(np.float64).reshape(shape)
    z = np.load(args.noise).astype(np.float64) if args.noise else np.zeros(0)
    if len(shape) != 4 or z.size % x.size != 0:
        raise SystemExit(f"shape {shape}: {z.size} noise values are not a whole number of steps")
    noise = Noise(z.reshape((-1,) + shape))
    net = fake_net(spec["net"], tab.T)
    if spec["sampler"] == "ddpm":
        ts, xs, x0s, out = ddpm(tab, net, x, spec["variance"], noise)
    elif spec["sampler"] == "ddim":
        ts, xs, x0s, out = ddim(tab, net, x, int(spec["steps"]), float(spec["eta"]), noise)
    else:
        raise SystemExit(f"sampler {spec['sampler']!r}")
    if noise.used != noise.z.shape[0]:
        raise SystemExit(f"{noise.z.shape[0]} noise draws given, the sampler used {noise.used}")
    np.save(f"{args.out}/t.npy", np.array(ts, dtype=np.int64))
    np.save(f"{args.out}/xt.npy", np.stack(xs))
    np.save(f"{args.out}/x0.npy", np.stack(x0s))
    np.save(f"{args.out}/out.npy", out)


if __name__ == "__main__":
    sys.exit(main())
