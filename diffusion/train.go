package diffusion

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
)

// TrainingBatch draws the inputs of one step of Algorithm 1 for the batch
// x0: first t_i ~ U{0, …, T−1} for each example, then ε ~ N(0, I) element by
// element in order, and x_t = QSample(x0, t, ε). The network should regress
// ε from (x_t, t). It panics if len(x0) does not match shape; TrainStep
// checks instead.
func (s *Schedule) TrainingBatch(x0 []float32, shape Shape, rng *rand.Rand) (xt []float32, t []int, eps []float32) {
	if err := checkShape("TrainingBatch", x0, shape); err != nil {
		panic(err)
	}
	t = make([]int, shape.N)
	for i := range t {
		t[i] = rng.IntN(s.T)
	}
	eps = make([]float32, len(x0))
	for j := range eps {
		eps[j] = float32(rng.NormFloat64())
	}
	xt = make([]float32, len(x0))
	s.qSampleInto(xt, x0, t, eps)
	return xt, t, eps
}

// TrainStep is one iteration of Algorithm 1: it draws t, ε and x_t with
// s.TrainingBatch and asks the learner to take a gradient step on
// L_simple = mean((ε − ε_θ(x_t, t))²).
func TrainStep(s *Schedule, l Learner, x0 []float32, shape Shape, rng *rand.Rand) (StepStats, error) {
	if s == nil || l == nil || rng == nil {
		return StepStats{}, errors.New("diffusion: TrainStep needs a schedule, a learner and an rng")
	}
	if err := checkShape("TrainStep", x0, shape); err != nil {
		return StepStats{}, err
	}
	xt, t, eps := s.TrainingBatch(x0, shape, rng)
	st, err := l.TrainStep(xt, t, eps, shape)
	if err != nil {
		return st, fmt.Errorf("diffusion: train step: %w", err)
	}
	return st, nil
}

// LossSimple is L_simple = mean((ε − ε̂)²) over all elements (eq. 14; code training_losses with loss_type 'mse').
// It panics if the lengths differ and returns NaN for empty slices.
func LossSimple(eps, epsHat []float32) float64 {
	sameLen("LossSimple", len(eps), len(epsHat))
	if len(eps) == 0 {
		return math.NaN()
	}
	var sum float64
	for j := range eps {
		d := float64(eps[j]) - float64(epsHat[j])
		sum += d * d
	}
	return sum / float64(len(eps))
}
