package compute

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/ddpm-studio/ddpm-studio/compute/ops"
	"github.com/ddpm-studio/ddpm-studio/diffusion"
)

// OptimConfig holds the optimizer settings. The defaults are the paper's CIFAR-10 ones,
// except the EMA decay, whose warm-up (see EMADecayAt) makes it usable for short runs.
type OptimConfig struct {
	LR       float64 `json:"lr"`        // Adam learning rate after warm-up
	Warmup   int     `json:"warmup"`    // steps of linear learning-rate warm-up
	Beta1    float64 `json:"beta1"`     // Adam β1
	Beta2    float64 `json:"beta2"`     // Adam β2
	Eps      float64 `json:"eps"`       // Adam ε
	GradClip float64 `json:"grad_clip"` // global gradient norm clip; 0 disables
	EMADecay float64 `json:"ema_decay"` // EMA decay of the weights; 0 disables the EMA
}

// DefaultOptim returns the paper's settings: Adam lr 2e-4, warm-up 5000, clip 1.0, EMA 0.9999.
func DefaultOptim() OptimConfig {
	return OptimConfig{LR: 2e-4, Warmup: 5000, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, GradClip: 1, EMADecay: 0.9999}
}

// Trainer owns a UNet's optimizer state (Adam moments), its EMA weights and the
// random stream of its dropout masks. It implements diffusion.Learner.
type Trainer struct {
	Net   *UNet
	Optim OptimConfig
	Step  int64       // optimizer steps taken
	M, V  [][]float32 // Adam moments, one per parameter
	EMA   [][]float32 // exponential moving average of the weights, one per parameter
	rng   *rand.PCG   // dropout masks
	train map[int]*forward
	stop  atomic.Bool // set by Interrupt
	dev   *devTrainer // the state on a device (SetDevice); nil on the CPU
}

// ErrInterrupted is returned by TrainStep when Interrupt abandoned the step.
var ErrInterrupted = errors.New("training step interrupted")

// Interrupt makes the running TrainStep (or the next one) give up within one convolution's
// time and return ErrInterrupted, leaving the weights, the optimizer, the EMA and the
// dropout stream exactly as they were before that step. Safe to call from any goroutine.
func (t *Trainer) Interrupt() { t.stop.Store(true) }

// NewTrainer starts training net from step 0; seed drives the dropout masks.
func NewTrainer(net *UNet, opt OptimConfig, seed uint64) *Trainer {
	t := &Trainer{Net: net, Optim: opt, rng: rand.NewPCG(seed, 0xda3e39cb94b95bdb), train: map[int]*forward{}}
	for _, p := range net.Params {
		t.M = append(t.M, make([]float32, len(p.Data)))
		t.V = append(t.V, make([]float32, len(p.Data)))
		t.EMA = append(t.EMA, append([]float32(nil), p.Data...))
	}
	return t
}

// PredictEps runs the raw (non-EMA) network.
func (t *Trainer) PredictEps(ctx context.Context, xt []float32, ts []int, shape diffusion.Shape) ([]float32, error) {
	return t.Net.PredictEps(ctx, xt, ts, shape)
}

// EMANet returns a UNet that reads the EMA weights (live: later steps update it). On a
// device it reads them there, and may be used until the trainer is closed or moved.
func (t *Trainer) EMANet() *UNet {
	if t.dev != nil {
		return t.emaNetDevice(t.Net.WithWeights(t.EMA))
	}
	return t.Net.WithWeights(t.EMA)
}

// LRAt is the learning rate of step (0-based): linear warm-up to LR over Warmup steps.
func (o OptimConfig) LRAt(step int64) float64 {
	if o.Warmup <= 0 || step+1 >= int64(o.Warmup) {
		return o.LR
	}
	return o.LR * float64(step+1) / float64(o.Warmup)
}

// EMADecayAt is the EMA decay used at step: min(decay, (1+step)/(10+step)), as
// tf.train.ExponentialMovingAverage with num_updates, so early weights fade fast.
func (o OptimConfig) EMADecayAt(step int64) float64 {
	return math.Min(o.EMADecay, float64(1+step)/float64(10+step))
}

// Prepare builds (once) the training graph for batches of n and estimates the memory a
// training step needs: the arena of activations and gradients its program planned, the
// inputs and parameters bound to the graph, Adam's moments and the EMA. Callers compare
// it with the memory available before the first step, since running out of memory
// cannot be recovered from.
func (t *Trainer) Prepare(n int) (int64, error) {
	if t.dev != nil {
		return t.prepareDevice(n)
	}
	f, err := t.graph(n)
	if err != nil {
		return 0, err
	}
	return f.prog.arena + f.prog.args + 3*4*int64(t.Net.NumParams()), nil
}

// graph returns the training graph for batches of n, building it the first time.
func (t *Trainer) graph(n int) (*forward, error) {
	if f, ok := t.train[n]; ok {
		return f, nil
	}
	f, err := t.Net.build(n, true, &t.stop)
	if err != nil {
		return nil, err
	}
	t.train[n] = f
	return f, nil
}

// TrainStep takes one Adam step on mean((eps − ε̂(x_t, t))²).
func (t *Trainer) TrainStep(xt []float32, ts []int, eps []float32, shape diffusion.Shape) (diffusion.StepStats, error) {
	net := t.Net
	if err := net.checkShape(xt, ts, shape); err != nil {
		return diffusion.StepStats{}, err
	}
	if len(eps) != len(xt) {
		return diffusion.StepStats{}, fmt.Errorf("eps has %d values, x_t %d", len(eps), len(xt))
	}
	if t.dev != nil {
		return t.dev.step(t, xt, ts, eps, shape)
	}
	f, err := t.graph(shape.N)
	if err != nil {
		return diffusion.StepStats{}, err
	}
	copy(backing(f.eps), eps)
	rngBefore := *t.rng
	t.fillMasks(f)
	if err := f.run(xt, ts, net.Config.Ch); err != nil {
		if errors.Is(err, ops.ErrStopped) || t.stop.Load() {
			*t.rng = rngBefore
			t.stop.Store(false)
			return diffusion.StepStats{}, ErrInterrupted
		}
		return diffusion.StepStats{}, fmt.Errorf("training step: %w", err)
	}
	loss := float64(f.prog.value(f.loss).Data().(float32))
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return diffusion.StepStats{Loss: loss}, fmt.Errorf("step %d: loss is %v; weights left unchanged (lower the learning rate?)", t.Step+1, loss)
	}
	grads := make([][]float32, len(f.grads))
	for i, g := range f.grads {
		grads[i] = f.prog.float32s(g)
	}
	norm := globalNorm(grads)
	scale := 1.0
	if c := t.Optim.GradClip; c > 0 && norm > c {
		scale = c / norm // tf.clip_by_global_norm
	}
	lr := t.Optim.LRAt(t.Step)
	t.adam(grads, scale, lr)
	t.Step++
	t.updateEMA()
	return diffusion.StepStats{Loss: loss, GradNorm: norm, LR: lr}, nil
}

// fillMasks draws the dropout masks: 0 with probability p, else 1/(1−p). Each mask
// takes one number from the trainer's stream as the seed of its own generators, one
// per block of maskBlock values, so that the cores fill the blocks in parallel and the
// masks still follow from the stream alone (a resumed run draws the same ones).
func (t *Trainer) fillMasks(f *forward) {
	p := t.Net.Config.Dropout
	keep := float32(1 / (1 - p))
	drop := uint32(min(math.Round(p*(1<<32)), math.MaxUint32)) // u < drop with probability p, u uniform on 32 bits
	for _, m := range f.masks {
		d := backing(m)
		seed := t.rng.Uint64()
		blocks := (len(d) + maskBlock - 1) / maskBlock
		workers := min(runtime.GOMAXPROCS(0), blocks)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for b := w; b < blocks; b += workers {
					fillMaskBlock(d[b*maskBlock:min((b+1)*maskBlock, len(d))], rand.NewPCG(seed, uint64(b)), drop, keep)
				}
			}()
		}
		wg.Wait()
	}
}

// maskBlock is the number of mask values drawn from one generator.
const maskBlock = 1 << 16

// fillMaskBlock sets each value of d to 0 or keep, two values per 64 random bits.
func fillMaskBlock(d []float32, r *rand.PCG, drop uint32, keep float32) {
	pick := func(u uint32) float32 {
		if u < drop {
			return 0
		}
		return keep
	}
	for i := 0; i < len(d); i += 2 {
		u := r.Uint64()
		d[i] = pick(uint32(u))
		if i+1 < len(d) {
			d[i+1] = pick(uint32(u >> 32))
		}
	}
}

// globalNorm is √(Σ g²) over every gradient, accumulated in float64.
func globalNorm(grads [][]float32) float64 {
	s := 0.0
	for _, g := range grads {
		for _, v := range g {
			s += float64(v) * float64(v)
		}
	}
	return math.Sqrt(s)
}

// adam applies one Adam update (TensorFlow's form, ε outside the bias correction)
// to every parameter with gradients multiplied by scale.
func (t *Trainer) adam(grads [][]float32, scale, lr float64) {
	o := t.Optim
	step := float64(t.Step + 1)
	lrt := lr * math.Sqrt(1-math.Pow(o.Beta2, step)) / (1 - math.Pow(o.Beta1, step))
	b1, b2 := float32(o.Beta1), float32(o.Beta2)
	sc, eps, lr32 := float32(scale), o.Eps, lrt
	for i, p := range t.Net.Params {
		m, v, g, w := t.M[i], t.V[i], grads[i], p.Data
		for j := range w {
			gj := g[j] * sc
			m[j] = b1*m[j] + (1-b1)*gj
			v[j] = b2*v[j] + (1-b2)*gj*gj
			w[j] -= float32(lr32 * float64(m[j]) / (math.Sqrt(float64(v[j])) + eps))
		}
	}
}

// updateEMA moves the EMA weights towards the current ones.
func (t *Trainer) updateEMA() {
	if t.Optim.EMADecay == 0 {
		for i, p := range t.Net.Params {
			copy(t.EMA[i], p.Data)
		}
		return
	}
	d := float32(t.Optim.EMADecayAt(t.Step - 1))
	for i, p := range t.Net.Params {
		e := t.EMA[i]
		for j, w := range p.Data {
			e[j] = d*e[j] + (1-d)*w
		}
	}
}

// RNGState returns the dropout generator's state for a checkpoint.
func (t *Trainer) RNGState() ([]byte, error) { return t.rng.MarshalBinary() }

// SetRNGState restores the dropout generator.
func (t *Trainer) SetRNGState(b []byte) error { return t.rng.UnmarshalBinary(b) }

// Close releases the compiled graphs (and the trainer's device memory).
func (t *Trainer) Close() {
	if t.dev != nil {
		t.dev.close()
		t.dev = nil
	}
	clear(t.train)
	t.Net.Close()
}
