package diffusion

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func TestTrainingBatch(t *testing.T) {
	const T = 10
	s := mustSchedule(t, "linear", T)
	rng := rand.New(rand.NewPCG(11, 12))
	shape := Shape{N: 500, C: 1, H: 2, W: 3}
	x0 := gridImages(rng, shape.Size())
	counts := make([]int, T)
	var epsAll []float32
	for range 20 {
		xt, ts, eps := s.TrainingBatch(x0, shape, rng)
		if len(xt) != shape.Size() || len(eps) != shape.Size() || len(ts) != shape.N {
			t.Fatalf("lengths %d %d %d", len(xt), len(eps), len(ts))
		}
		for _, ti := range ts {
			if ti < 0 || ti >= T {
				t.Fatalf("t = %d", ti)
			}
			counts[ti]++
		}
		want := s.QSample(x0, ts, eps)
		for j := range xt {
			if xt[j] != want[j] {
				t.Fatalf("x_t[%d] = %v, QSample gives %v", j, xt[j], want[j])
			}
		}
		epsAll = append(epsAll, eps...)
	}
	// t ~ U{0..T−1}: 10000 draws, each count ≈ 1000 ± 30.
	for ti, c := range counts {
		if c < 880 || c > 1120 {
			t.Errorf("t=%d drawn %d times of 10000", ti, c)
		}
	}
	m, v := meanVar(epsAll)
	if math.Abs(m) > 0.01 || math.Abs(v-1) > 0.02 {
		t.Errorf("ε mean %v variance %v", m, v)
	}
}

type recLearner struct {
	oracle
	xt, eps []float32
	t       []int
	err     error
}

func (l *recLearner) TrainStep(xt []float32, t []int, eps []float32, shape Shape) (StepStats, error) {
	l.xt, l.t, l.eps = xt, t, eps
	return StepStats{Loss: 0.25, GradNorm: 2, LR: 1e-4}, l.err
}

func TestTrainStep(t *testing.T) {
	s := mustSchedule(t, "cosine", 50)
	rng := rand.New(rand.NewPCG(13, 14))
	shape := Shape{N: 3, C: 2, H: 2, W: 2}
	x0 := gridImages(rng, shape.Size())
	l := &recLearner{}
	st, err := TrainStep(s, l, x0, shape, rng)
	if err != nil || st.Loss != 0.25 || st.LR != 1e-4 {
		t.Fatalf("TrainStep = %+v, %v", st, err)
	}
	if len(l.t) != 3 || len(l.xt) != shape.Size() {
		t.Fatalf("learner got %d t, %d values", len(l.t), len(l.xt))
	}
	want := s.QSample(x0, l.t, l.eps)
	for j := range want {
		if want[j] != l.xt[j] {
			t.Fatal("learner's x_t is not QSample(x0, t, ε)")
		}
	}
	if _, err := TrainStep(s, l, x0[:5], shape, rng); !errors.Is(err, ErrShape) {
		t.Fatalf("bad shape: %v", err)
	}
	l.err = errors.New("boom")
	if _, err := TrainStep(s, l, x0, shape, rng); !errors.Is(err, l.err) {
		t.Fatalf("learner error: %v", err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("TrainingBatch accepted a bad shape")
			}
		}()
		s.TrainingBatch(x0, Shape{N: 2, C: 2, H: 2, W: 2}, rng)
	}()
}

func TestLossSimple(t *testing.T) {
	if got := LossSimple([]float32{1, 2, 3, -1}, []float32{1, 0, 4, 1}); got != (0+4+1+4)/4.0 {
		t.Fatalf("LossSimple = %v", got)
	}
	if !math.IsNaN(LossSimple(nil, nil)) {
		t.Fatal("empty loss not NaN")
	}
}
