// Package compute is the DDPM network: the official U-Net (Ho et al. 2020,
// diffusion_tf/models/unet.py) as a Gorgonia graph, its optimizer, EMA and
// checkpoints. It implements diffusion.Denoiser (UNet) and
// diffusion.Learner (Trainer).
//
// Decisions, and why:
//   - Parameters carry the PyTorch port's state_dict names and layouts (conv
//     OIHW, dense [out, in]); checkpoints are float32 safetensors files under
//     those names, so weights move both ways between this package and the port.
//   - The weights live in plain []float32 slices that every compiled graph
//     shares (one per batch size, with or without gradients), so the raw
//     weights, the EMA weights and the optimizer need no copies.
//   - Convolution, GroupNorm(+swish), swish, upsampling and softmax are our own
//     ops (package ops): Gorgonia's GroupNorm and SoftMax forward passes are
//     wrong (v0.9.18: GroupNorm on groups of 512 values, SoftMax on rows far
//     below the tensor's first value, which give NaN), and its convolution runs
//     on gonum's pure-Go GEMM instead of OpenBLAS (ops/blas_cgo.go).
//   - Graphs run on our program (exec.go), not Gorgonia's TapeMachine: the
//     TapeMachine keeps every value of the graph alive for the whole run, the
//     program plans one arena from the values' lifetimes, so a training step
//     holds only what is alive at once (for mnist at batch 64 under a third
//     of all the values, TestProgramArenaIsSmall). Its results equal the
//     TapeMachine's bit for bit (TestProgramMatchesTapeMachine).
//   - Adam is ours, in TensorFlow's form (ε added to √v̂ after the bias
//     correction folded into the step size, as the official TF code ran), with
//     linear learning-rate warm-up and gradient clipping by global norm (the
//     paper's 1.0): Gorgonia's solvers clip elementwise and keep their moments
//     where a checkpoint cannot reach them.
//   - Warm-up reaches the full rate at step Warmup: the rate of step s
//     (0-based) is LR·min(1, (s+1)/Warmup), so no step is taken at rate 0.
//     The official code (diffusion_tf/utils.py get_warmed_up_lr) uses
//     LR·min(1, s/Warmup) with the global step before the update, so its
//     first step only fills Adam's moments.
//   - The EMA decay of step s is min(decay, (1+s)/(10+s)), the schedule of
//     tf.train.ExponentialMovingAverage with num_updates = s, the step count
//     before the update: with decay 0.9999 and a run of a few thousand steps
//     the EMA still follows the weights, instead of staying near the random
//     initialisation (a common cause of "samples stay noise" on short runs).
//     The official code (diffusion_tf/tpu_utils/tpu_utils.py make_ema) passes
//     no num_updates: its decay is 1e-10 at step 0 and the full decay after.
//   - Dropout masks are drawn by the trainer from its own PCG stream and fed to
//     the graph as inputs, so a checkpoint holds every bit of randomness and a
//     resumed run is bit-identical to an uninterrupted one.
//   - A checkpoint is a directory written under a temporary name, synced and
//     renamed (checkpoints/step-NNNNNNNN); the last two are kept.
//   - A UNet or Trainer runs on the CPU until SetDevice moves it to a GPU (OpenDevice;
//     package compute/cuda in builds with -tags ddpmcuda). The device runs the same
//     compiled graphs (devplan.go lowers them to package gpu's kernels, with an arena
//     planned from lifetimes like exec.go's) and the whole training step; the host
//     slices (Params, M, V, EMA) are brought up to date by SyncHost, which
//     SaveCheckpoint calls, so checkpoints do not depend on the device. The device tests
//     run the kernels on a CPU emulator of the same sources where there is no GPU.
package compute
