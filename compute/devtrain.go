package compute

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"

	G "gorgonia.org/gorgonia"

	"github.com/ddpm-studio/ddpm-studio/compute/gpu"
	"github.com/ddpm-studio/ddpm-studio/diffusion"
)

// SetDevice moves the network's forward passes (PredictEps) to d, uploading its
// weights; a nil or CPU device brings them back to the CPU. The host slices
// (Params[i].Data) stay the weights' source: a UNet whose weights change on the host
// must be set to the device again.
func (u *UNet) SetDevice(d *Device) error {
	if u.dev != nil {
		u.dev.close()
		u.dev = nil
	}
	if !d.IsGPU() {
		return nil
	}
	dn, err := newDevNet(d, u)
	if err != nil {
		return err
	}
	u.dev = dn
	return nil
}

// Device returns the device the network runs on.
func (u *UNet) Device() *Device {
	if u.dev != nil {
		return u.dev.dev
	}
	return CPU()
}

// predictDevice is the part of PredictEps that runs on a device.
func (u *UNet) predictDevice(ctx context.Context, xt []float32, t []int, out []float32, per int) error {
	d := u.dev.dev
	for lo := 0; lo < len(t); lo += u.MaxBatch {
		if err := ctx.Err(); err != nil {
			return err
		}
		hi := min(lo+u.MaxBatch, len(t))
		d.mu.Lock()
		err := u.dev.predict(u, xt[lo*per:hi*per], t[lo:hi], out[lo*per:hi*per])
		d.mu.Unlock()
		if err != nil {
			return fmt.Errorf("forward pass on %s: %w", d.kind, err)
		}
	}
	return nil
}

// SetDevice moves training to d: the weights, Adam's moments and the EMA are uploaded
// and stay there between steps; the network's forward passes follow. A nil or CPU
// device brings everything back to the host slices. The step count and the dropout
// stream are the trainer's own, so a run moves between devices and resumes exactly.
func (t *Trainer) SetDevice(d *Device) error {
	if t.dev != nil {
		if err := t.SyncHost(); err != nil {
			return err
		}
		t.dev.close()
		t.dev = nil
		t.Net.SetDevice(nil)
	}
	if !d.IsGPU() {
		return nil
	}
	dt, err := newDevTrainer(d, t)
	if err != nil {
		return err
	}
	t.Net.SetDevice(nil)
	t.Net.dev = &devNet{dev: d, layout: dt.layout, weights: dt.w, eval: map[int]*devGraph{}}
	t.dev = dt
	return nil
}

// Device returns the device the trainer runs on.
func (t *Trainer) Device() *Device {
	if t.dev != nil {
		return t.dev.dev
	}
	return CPU()
}

// SyncHost copies the weights, Adam's moments and the EMA from the device into the
// host slices (Net.Params[i].Data, M, V, EMA), which a device trainer does not update
// after every step; SaveCheckpoint calls it. On the CPU it does nothing.
func (t *Trainer) SyncHost() error {
	if t.dev == nil {
		return nil
	}
	d := t.dev.dev
	d.mu.Lock()
	defer d.mu.Unlock()
	return t.dev.sync(t)
}

// emaNetDevice returns a UNet that reads the trainer's EMA on the device.
func (t *Trainer) emaNetDevice(u *UNet) *UNet {
	u.dev = &devNet{dev: t.dev.dev, layout: t.dev.layout, weights: t.dev.e, eval: map[int]*devGraph{}}
	return u
}

// prepareDevice is Trainer.Prepare on a device: the bytes of the training graph, the
// five flat arrays and the small buffers.
func (t *Trainer) prepareDevice(n int) (int64, error) {
	d := t.dev.dev
	d.mu.Lock()
	defer d.mu.Unlock()
	g, err := t.dev.graph(t, n)
	if err != nil {
		return 0, err
	}
	return g.bytes() + 5*4*int64(t.dev.layout.n) + 4*smallFloats + 24*int64(len(t.Net.Params)), nil
}

// divergedf is the error of a step refused because it would not give finite numbers; it
// wraps ErrDiverged, as the CPU's does.
func divergedf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrDiverged}, args...)...)
}

// step is TrainStep on the device: upload x_t, the embedding of t and ε; draw the
// dropout masks there (the same bits as the CPU's, from the same stream); run the
// graph; gather the gradients into one array and take their global norm; copy the loss
// and the norm back; check that the update is finite, then apply it (Adam and the EMA).
// Only the loss and the norm cross to the host.
func (dt *devTrainer) step(t *Trainer, xt []float32, ts []int, eps []float32, shape diffusion.Shape) (diffusion.StepStats, error) {
	d := dt.dev
	d.mu.Lock()
	defer d.mu.Unlock()
	be := d.be
	fail := func(err error) (diffusion.StepStats, error) {
		return diffusion.StepStats{}, fmt.Errorf("training step on %s: %w", d.kind, err)
	}
	g, err := dt.graph(t, shape.N)
	if err != nil {
		return fail(err)
	}
	rngBefore := *t.rng
	interrupted := func() (diffusion.StepStats, error) {
		*t.rng = rngBefore
		t.stop.Store(false)
		if err := be.Sync(); err != nil { // the queued work must be done before the buffers are reused
			return fail(err)
		}
		return diffusion.StepStats{}, ErrInterrupted
	}
	if err := g.feed(xt, ts, t.Net.Config.Ch); err != nil {
		return fail(err)
	}
	if err := gpu.Upload(be, g.input(g.f.eps), eps); err != nil {
		return fail(err)
	}
	p := t.Net.Config.Dropout
	keep := float32(1 / (1 - p))
	drop := uint32(min(math.Round(p*(1<<32)), math.MaxUint32)) // as fillMasks
	for _, m := range g.f.masks {
		if err := gpu.DropoutMask(be, g.input(m), m.Shape().TotalSize(), t.rng.Uint64(), drop, keep); err != nil {
			return fail(err)
		}
	}
	if err := g.run(&t.stop); errors.Is(err, ErrInterrupted) {
		return interrupted()
	} else if err != nil {
		return fail(err)
	}
	np := len(g.f.grads)
	if err := gpu.Gather(be, dt.g, g.table, g.table.Add(2*np), g.table.Add(4*np), np, g.maxLen); err != nil {
		return fail(err)
	}
	norm2, part, bad := dt.small, dt.small.Add(2), dt.small.Add(2*(gpu.SumParts+1))
	if err := gpu.Sum(be, norm2, 0, dt.g, dt.layout.n, true, part); err != nil {
		return fail(err)
	}
	loss32 := make([]float32, 1)
	if err := gpu.Download(be, loss32, g.ptr(g.f.loss)); err != nil {
		return fail(err)
	}
	words := make([]uint64, 1)
	if err := gpu.DownloadWords(be, words, norm2); err != nil {
		return fail(err)
	}
	loss, norm := float64(loss32[0]), math.Sqrt(math.Float64frombits(words[0]))
	lr := t.Optim.LRAt(t.Step)
	st := diffusion.StepStats{Loss: loss, GradNorm: norm, LR: lr}
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		*t.rng = rngBefore
		return diffusion.StepStats{Loss: loss}, divergedf("step %d: loss is %v; weights left unchanged (lower the learning rate?)", t.Step+1, loss)
	}
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		*t.rng = rngBefore
		return st, divergedf("step %d: the gradients are not finite (their norm is %v, the loss %.3g); weights left unchanged (lower the learning rate?)", t.Step+1, norm, loss)
	}
	if t.stop.Load() {
		return interrupted()
	}
	o := t.Optim
	scale := 1.0
	if c := o.GradClip; c > 0 && norm > c {
		scale = c / norm // tf.clip_by_global_norm
	}
	step := float64(t.Step + 1)
	a := gpu.Adam{Beta1: float32(o.Beta1), Beta2: float32(o.Beta2), Scale: float32(scale),
		LRT: lr * math.Sqrt(1-math.Pow(o.Beta2, step)) / (1 - math.Pow(o.Beta1, step)), Eps: o.Eps,
		EMA: o.EMADecay != 0, Decay: float32(o.EMADecayAt(t.Step))}
	words[0] = math.MaxUint64
	if err := gpu.UploadWords(be, bad, words); err != nil {
		return fail(err)
	}
	if err := gpu.AdamEMA(be, dt.w, dt.m, dt.v, dt.e, dt.g, dt.layout.n, a, false, bad); err != nil {
		return fail(err)
	}
	if err := gpu.DownloadWords(be, words, bad); err != nil {
		return fail(err)
	}
	if words[0] != math.MaxUint64 {
		*t.rng = rngBefore
		i, what := int(words[0]/4), [...]string{"Adam's first moment", "Adam's second moment", "the weights", "the EMA"}[words[0]%4]
		return st, divergedf("step %d: this update would make %s of %s overflow to Inf or NaN (learning rate %.3g, gradient norm %.3g, loss %.3g); weights left unchanged (lower the learning rate?)",
			t.Step+1, what, t.Net.Params[dt.layout.param(i)].Name, lr, norm, loss)
	}
	if err := gpu.AdamEMA(be, dt.w, dt.m, dt.v, dt.e, dt.g, dt.layout.n, a, true, bad); err != nil {
		return fail(err)
	}
	t.Step++
	return st, nil
}

// param returns the parameter that holds flat index i.
func (l devParams) param(i int) int { return sort.SearchInts(l.offs, i+1) - 1 }

// DeviceTrainBytes is the device memory that training this model at batch n on d needs:
// the plan of its training graph (arena, constants, inputs), the weights, gradients,
// Adam's moments and the EMA as flat arrays, and the small buffers. Nothing is
// allocated; compare it with d.MemInfo's free memory before the first step.
func (u *UNet) DeviceTrainBytes(d *Device, n int) (int64, error) {
	if n < 1 {
		return 0, fmt.Errorf("batch %d: must be at least 1", n)
	}
	f, err := u.buildGraph(n, true, nil, true)
	if err != nil {
		return 0, err
	}
	inputs := append([]*G.Node{f.x, f.temb, f.eps}, f.masks...)
	keep := append([]*G.Node{f.out, f.loss}, f.grads...)
	budget := int64(defaultScratch)
	if d != nil && d.scratchBudget > 0 {
		budget = d.scratchBudget
	}
	p, err := newDevPlan(f.g, u.Params, inputs, keep, budget)
	if err != nil {
		return 0, err
	}
	return p.bytes() + 5*4*int64(p.nparams) + 4*smallFloats + 24*int64(len(u.Params)), nil
}
