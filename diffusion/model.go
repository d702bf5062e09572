package diffusion

import "context"

// Shape is the shape of a batch of images, N×C×H×W.
type Shape struct{ N, C, H, W int }

// Size is the number of values in a batch of this shape.
func (s Shape) Size() int { return s.N * s.C * s.H * s.W }

// Denoiser predicts the noise ε in x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε.
type Denoiser interface {
	// PredictEps returns ε̂(x_t, t) for a batch laid out as shape; len(t) == shape.N.
	// It must not modify xt or t, nor keep them after it returns: the samplers
	// reuse those buffers. The caller only reads the result.
	PredictEps(ctx context.Context, xt []float32, t []int, shape Shape) ([]float32, error)
}

// StepStats describes one optimizer step.
type StepStats struct {
	Loss     float64 // L_simple on the batch
	GradNorm float64 // global gradient norm before clipping
	LR       float64 // learning rate used for the step
}

// Learner is a Denoiser that can take an optimizer step on L_simple.
type Learner interface {
	Denoiser
	// TrainStep takes one step minimising mean((eps − ε̂(x_t, t))²).
	TrainStep(xt []float32, t []int, eps []float32, shape Shape) (StepStats, error)
}
