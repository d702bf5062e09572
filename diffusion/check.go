package diffusion

import (
	"context"
	"errors"
	"fmt"
	"math"
)

// ErrShape is wrapped by the errors returned for a batch whose length does
// not match its Shape, or a Shape with a non-positive dimension.
var ErrShape = errors.New("diffusion: shape mismatch")

// ErrNonFinite is wrapped by the errors returned when the denoiser produces
// a NaN or infinite ε̂ (a diverged network), so that callers can tell it from
// other failures instead of drawing black images.
var ErrNonFinite = errors.New("diffusion: non-finite value")

// checkShape reports whether x is a batch of the given shape.
func checkShape(what string, x []float32, shape Shape) error {
	if shape.N <= 0 || shape.C <= 0 || shape.H <= 0 || shape.W <= 0 {
		return fmt.Errorf("%w: %s: shape %d×%d×%d×%d has a non-positive dimension", ErrShape, what, shape.N, shape.C, shape.H, shape.W)
	}
	if len(x) != shape.Size() {
		return fmt.Errorf("%w: %s: %d values for shape %d×%d×%d×%d (%d values)", ErrShape, what, len(x), shape.N, shape.C, shape.H, shape.W, shape.Size())
	}
	return nil
}

// predict calls the denoiser and checks what it returns. A failure while ctx
// is done is reported as ctx.Err().
func predict(ctx context.Context, net Denoiser, xt []float32, t []int, shape Shape) ([]float32, error) {
	eps, err := net.PredictEps(ctx, xt, t, shape)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, fmt.Errorf("diffusion: denoiser at t=%d: %w", t[0], err)
	}
	if len(eps) != len(xt) {
		return nil, fmt.Errorf("%w: denoiser at t=%d returned %d values for %d inputs", ErrShape, t[0], len(eps), len(xt))
	}
	for j, v := range eps {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("%w: denoiser returned ε̂[%d] = %v at t=%d", ErrNonFinite, j, v, t[0])
		}
	}
	return eps, nil
}

func fillInts(t []int, v int) {
	for i := range t {
		t[i] = v
	}
}
