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

// ErrDiverged is wrapped by the error of a TrainStep that refused to update the weights
// because the loss, the gradients or the new values would not be finite numbers.
var ErrDiverged = errors.New("training diverged")

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
// tf.train.ExponentialMovingAverage given num_updates = step (the official DDPM code gives it
// none; see the package documentation), so that early weights fade fast.
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

// TrainStep takes one Adam step on mean((eps − ε̂(x_t, t))²). It refuses, with an error
// wrapping ErrDiverged, a step whose loss or gradients are not finite or whose update would
// make a weight, an Adam moment or an EMA value Inf or NaN; a refused step leaves the
// weights, the moments, the EMA, Step and the dropout stream exactly as they were.
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
		*t.rng = rngBefore
		return diffusion.StepStats{Loss: loss}, fmt.Errorf("%w at step %d: the loss is %v; the step was refused and the weights, the optimizer state and the EMA are unchanged: lower the learning rate (now %.3g)",
			ErrDiverged, t.Step+1, loss, t.Optim.LRAt(t.Step))
	}
	grads := make([][]float32, len(f.grads))
	for i, g := range f.grads {
		grads[i] = f.prog.float32s(g)
	}
	norm := globalNorm(grads)
	lr := t.Optim.LRAt(t.Step)
	st := diffusion.StepStats{Loss: loss, GradNorm: norm, LR: lr}
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		*t.rng = rngBefore
		return st, fmt.Errorf("%w at step %d: the gradients are not finite (their norm is %v, the loss %.3g); the step was refused and the weights, the optimizer state and the EMA are unchanged: lower the learning rate (now %.3g)",
			ErrDiverged, t.Step+1, norm, loss, lr)
	}
	scale := 1.0
	if c := t.Optim.GradClip; c > 0 && norm > c {
		scale = c / norm // tf.clip_by_global_norm
	}
	u := t.newUpdate(scale, lr)
	if bad := u.check(t, grads); bad != nil {
		*t.rng = rngBefore
		return st, fmt.Errorf("%w at step %d: this update would make %s of %s overflow to Inf or NaN (learning rate %.3g, gradient norm %.3g, loss %.3g); the step was refused and the weights, the optimizer state and the EMA are unchanged: lower the learning rate",
			ErrDiverged, t.Step+1, bad.what, t.Net.Params[bad.param].Name, lr, norm, loss)
	}
	u.commit(t, grads)
	t.Step++
	return st, nil
}

// fillMasks draws the dropout masks of a training graph from the trainer's stream.
func (t *Trainer) fillMasks(f *forward) {
	masks := make([][]float32, len(f.masks))
	for i, m := range f.masks {
		masks[i] = backing(m)
	}
	drawMasks(masks, t.Net.Config.Dropout, t.rng)
}

// drawMasks fills each mask with 0 with probability p, else 1/(1−p). Each mask takes
// one number from rng as the seed of its own generators, one per block of maskBlock
// values, so that the cores fill the blocks in parallel and the masks still follow from
// the stream alone (a resumed run draws the same ones).
func drawMasks(masks [][]float32, p float64, rng *rand.PCG) {
	keep := float32(1 / (1 - p))
	drop := uint32(min(math.Round(p*(1<<32)), math.MaxUint32)) // u < drop with probability p, u uniform on 32 bits
	for _, d := range masks {
		seed := rng.Uint64()
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

// update is one Adam step (TensorFlow's form, ε outside the bias correction) on gradients
// multiplied by scale, followed by the EMA update of the new weights.
type update struct {
	b1, b2, sc float32
	lrt, eps   float64
	ema        bool    // false: the EMA copies the weights
	d          float32 // EMA decay
}

func (t *Trainer) newUpdate(scale, lr float64) update {
	o := t.Optim
	step := float64(t.Step + 1)
	return update{
		b1: float32(o.Beta1), b2: float32(o.Beta2), sc: float32(scale),
		lrt: lr * math.Sqrt(1-math.Pow(o.Beta2, step)) / (1 - math.Pow(o.Beta1, step)),
		eps: o.Eps,
		ema: o.EMADecay != 0,
		d:   float32(o.EMADecayAt(t.Step)),
	}
}

// nonFinite names the first value an update would make Inf or NaN.
type nonFinite struct {
	param int
	what  string // "the weights", "Adam's first moment", …
}

// tensor computes the new moments, weights and EMA of parameter i from its gradient g;
// with commit it stores them, without it checks that every one is finite and reports the
// first that is not. Both run the same code, so a checked update stores exactly the
// values that were checked.
func (u update) tensor(t *Trainer, i int, g []float32, commit bool) *nonFinite {
	w := t.Net.Params[i].Data
	m, v, e, g := t.M[i][:len(w)], t.V[i][:len(w)], t.EMA[i][:len(w)], g[:len(w)]
	for j := range w {
		gj := g[j] * u.sc
		mj := u.b1*m[j] + (1-u.b1)*gj
		vj := u.b2*v[j] + (1-u.b2)*gj*gj
		wj := w[j] - float32(u.lrt*float64(mj)/(math.Sqrt(float64(vj))+u.eps))
		ej := wj
		if u.ema {
			ej = u.d*e[j] + (1-u.d)*wj
		}
		if commit {
			m[j], v[j], w[j], e[j] = mj, vj, wj, ej
		} else if !finite32(mj) || !finite32(vj) || !finite32(wj) || !finite32(ej) {
			return &nonFinite{i, whichNonFinite(mj, vj, wj)}
		}
	}
	return nil
}

// exact checks every new value of parameter i.
func (u update) exact(t *Trainer, i int, g []float32) *nonFinite { return u.tensor(t, i, g, false) }

// commit stores the update of every parameter.
func (u update) commit(t *Trainer, grads [][]float32) {
	for i := range t.Net.Params {
		u.tensor(t, i, grads[i], true)
	}
}

// check reports the first value the update would make Inf or NaN, or nil, without
// changing anything. It first computes only the new moments and compares them, the
// weights and the EMA values with limits that make every new value finite: since √v ≥ 0,
// a weight changes by at most lrt·|m|/ε, so |w| ≤ 5e37 and |m| ≤ 0.99·5e37·ε/lrt keep the
// new weight under 1e38 (a factor 3.4 below the float32 limit, far beyond any rounding),
// and an EMA value, a convex combination of an old one and a new weight, stays under it
// when |e| ≤ 1e38. Only a tensor with a value past a limit (or not finite) is checked
// exactly, value by value, by the code that commits; so is every tensor when ε is 0.
// This costs about half the commit, not the whole of it as the exact check would.
func (u update) check(t *Trainer, grads [][]float32) *nonFinite {
	const safe = 1e38
	mLim := float32(0.99 * safe / 2 * u.eps / u.lrt)
	bounded := u.eps > 0 && u.lrt > 0 && !math.IsInf(u.lrt, 0) && mLim > 0
	// The limits as the bits of non-negative float32s, which order as the values do (and
	// put NaN above +Inf): x ≤ lim is lim − |x| ≥ 0 as int32, and the sign bits of the
	// differences, OR-ed, say whether any value is past its limit.
	mL, wL, eL, vL := absBits(mLim), absBits(safe/2), absBits(safe), absBits(math.MaxFloat32)
	for i := range t.Net.Params {
		w := t.Net.Params[i].Data
		m, v, e, g := t.M[i][:len(w)], t.V[i][:len(w)], t.EMA[i][:len(w)], grads[i][:len(w)]
		past := int32(0)
		for j := range w {
			gj := g[j] * u.sc
			mj := u.b1*m[j] + (1-u.b1)*gj
			vj := u.b2*v[j] + (1-u.b2)*gj*gj
			past |= (mL - absBits(mj)) | (vL - absBits(vj)) | (wL - absBits(w[j])) | (eL - absBits(e[j]))
		}
		if past < 0 || !bounded {
			if bad := u.exact(t, i, g); bad != nil {
				return bad
			}
		}
	}
	return nil
}

// absBits is the bit pattern of |x|.
func absBits(x float32) int32 { return int32(math.Float32bits(x) &^ (1 << 31)) }

func whichNonFinite(m, v, w float32) string {
	switch {
	case !finite32(m):
		return "Adam's first moment"
	case !finite32(v):
		return "Adam's second moment"
	case !finite32(w):
		return "the weights"
	}
	return "the EMA weights"
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
