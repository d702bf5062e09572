// Package run is the application's core, below the command line and the window: a run
// directory and what is done with it. Both front ends (package main's subcommands and
// its window backend) drive the same types, so defaults, the training loop, the
// checkpoints, the noise of the previews and the layout of the images written exist once.
//
// A run directory holds:
//
//	checkpoints/step-NNNNNNNN/  model, EMA and optimizer safetensors and state.json (package compute);
//	                            state.json's "extra" is this package's Meta
//	metrics.jsonl               one Metric per logged step
//	samples/step-NNNNNNNN.png   the gallery: a 4×4 DDIM-50 grid from the EMA weights and a fixed noise
//	.lock                       held (flock) by the one process that trains the run; holds its PID
//
// Training: Open resumes the newest intact checkpoint or starts a new run from Options,
// and Session.Run is the one training loop (step, log, checkpoint by steps and by
// minutes, gallery grid, live preview, pause, stop within one convolution, NaN), reporting
// Events. Sampling: OpenModel, then Model.Sample and Model.Interpolate. Listing: List,
// Describe, Gallery, LossHistory.
//
// Decisions, and why:
//   - One writer per run: Open takes an advisory lock (flock) on RUN/.lock and refuses a
//     run another process trains, naming that process. Readers (sampling, the gallery,
//     the run list) take no lock: a checkpoint appears by an atomic rename, whole or not
//     at all, so they never see one half-written.
//   - Resuming applies what is safe to change and refuses the rest, never dropping an
//     option without a word. Applied, from the resumed step on, each with a note: the
//     target step count, the learning rate, the warm-up, the EMA decay, the batch size,
//     horizontal flips and the dataset (which must have the model's size; a new one is
//     named in a note). The checkpoint, gallery, log and preview cadences are the
//     session's own and are not stored. Refused, naming the stored value: the model
//     (preset, image size, channels, ch, ch_mult, res blocks, attention, dropout), the
//     schedule and T, and the seed, whose streams the checkpoint continues. Only options
//     the user gave (Options.Given) are compared, so a default never overrides a stored
//     value; a resumed run without --steps continues to the target it was started with.
//   - A new run stores its data folder as an absolute path, so that resuming from
//     another directory trains on the same images.
//   - Memory is checked before it is allocated: the parameters from their shapes
//     (compute.ParamCount), the training step from the plan of its graph
//     (compute.UNet.TrainBytes), sampling from the plan of a forward pass and the
//     sampler's buffers; a job that would not fit is refused with the batch or count
//     that would. Running out of memory would end the process with no checkpoint and
//     no explanation.
//   - A new run that never saved a checkpoint (stopped while loading, say) leaves no
//     folder behind, and no step-0 checkpoint is ever written.
//   - Every step is logged by default (LogEvery 1): a resumed run's loss curve is whole,
//     at about 120 bytes a step. metrics.jsonl is read as a stream.
//   - The preview and the gallery grids start from one fixed noise (FixedNoise), and a
//     sampling seed gives the same images in the window and on the command line
//     (SeedNoise); grids and strips are laid out by package imgio for both.
package run
