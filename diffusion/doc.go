// Package diffusion is the mathematics of Ho, Jain & Abbeel (2020),
// "Denoising Diffusion Probabilistic Models": noise schedules, the forward
// process q(x_t|x_0), the posterior q(x_{t-1}|x_t,x_0), the L_simple training
// inputs of Algorithm 1, the ancestral sampler of Algorithm 2, the DDIM
// sampler, and the variational bound in bits/dim.
//
// It follows the official diffusion_utils_2.py: one function per equation,
// coefficients in float64, t is the code's index 0 ≤ t < T. Images are flat
// float32 slices in N×C×H×W order in model space [−1, 1]. The network is
// reached only through the Denoiser and Learner interfaces; this package
// never imports Gorgonia or Fyne.
package diffusion
