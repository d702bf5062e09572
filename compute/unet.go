package compute

import (
	"fmt"
	"math"
	"slices"

	G "gorgonia.org/gorgonia"

	"github.com/ddpm-studio/ddpm-studio/compute/ops"
)

// The official DDPM U-Net (diffusion_tf/models/unet.py), top to bottom.
// Every builder method declares the parameters it uses under the PyTorch
// port's state_dict names, so the names below are the checkpoint's names.

// unet builds ε̂(x, temb0) for x [N,C,H,W] and the sinusoidal embedding temb0 [N,ch].
func (b *builder) unet(x, temb0 *G.Node) *G.Node {
	c := b.cfg
	ch := c.Ch

	// Timestep embedding: Dense → swish → Dense.
	temb := b.dense("temb.dense.0", temb0, ch, 4*ch)
	temb = b.swish(temb)
	temb = b.dense("temb.dense.1", temb, 4*ch, 4*ch)

	// Downsampling. Every output goes on the skip stack, conv_in's too.
	hs := []*G.Node{b.conv("conv_in", x, c.InChannels, ch, 3, 1, 1)}
	hsCh := []int{ch}
	res, cin := c.Resolution, ch
	for i, mult := range c.ChMult {
		cout := ch * mult
		for j := 0; j < c.NumResBlocks; j++ {
			h := b.resnetBlock(fmt.Sprintf("down.%d.block.%d", i, j), hs[len(hs)-1], temb, cin, cout)
			cin = cout
			if slices.Contains(c.AttnResolutions, res) {
				h = b.attnBlock(fmt.Sprintf("down.%d.attn.%d", i, j), h, cout)
			}
			hs, hsCh = append(hs, h), append(hsCh, cout)
		}
		if i != len(c.ChMult)-1 {
			hs = append(hs, b.downsample(fmt.Sprintf("down.%d.downsample", i), hs[len(hs)-1], cin))
			hsCh = append(hsCh, cin)
			res /= 2
		}
	}

	// Middle.
	h := hs[len(hs)-1]
	h = b.resnetBlock("mid.block_1", h, temb, cin, cin)
	h = b.attnBlock("mid.attn_1", h, cin)
	h = b.resnetBlock("mid.block_2", h, temb, cin, cin)

	// Upsampling: each block sees concat([h, skip]) along channels.
	for i := len(c.ChMult) - 1; i >= 0; i-- {
		cout := ch * c.ChMult[i]
		for j := 0; j < c.NumResBlocks+1; j++ {
			skip, skipCh := hs[len(hs)-1], hsCh[len(hsCh)-1]
			hs, hsCh = hs[:len(hs)-1], hsCh[:len(hsCh)-1]
			h = b.resnetBlock(fmt.Sprintf("up.%d.block.%d", i, j), b.concat(h, skip), temb, cin+skipCh, cout)
			cin = cout
			if slices.Contains(c.AttnResolutions, res) {
				h = b.attnBlock(fmt.Sprintf("up.%d.attn.%d", i, j), h, cout)
			}
		}
		if i != 0 {
			h = b.upsample(fmt.Sprintf("up.%d.upsample", i), h, cin)
			res *= 2
		}
	}

	// End: GroupNorm → swish → conv 3×3 (zero-initialised).
	h = b.normSwish("norm_out", h, cin)
	return b.convInit("conv_out", h, cin, c.OutCh, 3, 1, same(1), 0)
}

// resnetBlock is GN → swish → conv → +Dense(swish(temb)) → GN → swish → dropout → conv, plus the shortcut.
func (b *builder) resnetBlock(name string, x, temb *G.Node, cin, cout int) *G.Node {
	h := b.normSwish(name+".norm1", x, cin)
	h = b.conv(name+".conv1", h, cin, cout, 3, 1, 1)
	t := b.dense(name+".temb_proj", b.swish(temb), 4*b.cfg.Ch, cout)
	h = b.addChannelwise(h, t)
	h = b.normSwish(name+".norm2", h, cout)
	h = b.dropout(h)
	h = b.convInit(name+".conv2", h, cout, cout, 3, 1, same(1), 0)
	if cin != cout {
		x = b.conv(name+".nin_shortcut", x, cin, cout, 1, 1, 0)
	}
	return b.add(x, h)
}

// attnBlock is single-head self-attention over all H·W positions with a residual connection.
func (b *builder) attnBlock(name string, x *G.Node, c int) *G.Node {
	h := b.norm(name+".norm", x, c)
	q := b.conv(name+".q", h, c, c, 1, 1, 0)
	k := b.conv(name+".k", h, c, c, 1, 1, 0)
	v := b.conv(name+".v", h, c, c, 1, 1, 0)
	if b.spec() {
		b.convInit(name+".proj_out", nil, c, c, 1, 1, same(0), 0)
		return nil
	}
	s := x.Shape()
	n, hw := s[0], s[2]*s[3]
	q = b.reshape(q, n, c, hw)
	k = b.reshape(k, n, c, hw)
	v = b.reshape(v, n, c, hw)
	w := b.must(ops.BatchedMatMul(q, k, true, false))   // w[n,i,j] = Σ_c q[n,c,i] k[n,c,j]
	w = b.must(ops.Softmax(w, 1/math.Sqrt(float64(c)))) // of w·C^−½, over j
	h = b.must(ops.BatchedMatMul(v, w, false, true))    // h[n,c,i] = Σ_j v[n,c,j] w[n,i,j]
	b.flops += 2 * 2 * float64(n*hw*hw*c)               // the two products
	h = b.reshape(h, s...)
	h = b.convInit(name+".proj_out", h, c, c, 1, 1, same(0), 0)
	return b.add(x, h)
}

// downsample is a 3×3 stride-2 conv after zero padding of one row at the bottom and one column at the right.
func (b *builder) downsample(name string, x *G.Node, c int) *G.Node {
	return b.convInit(name+".conv", x, c, c, 3, 2, ops.Pads{Bottom: 1, Right: 1}, 1)
}

// upsample is nearest-neighbour ×2 followed by a 3×3 conv.
func (b *builder) upsample(name string, x *G.Node, c int) *G.Node {
	if !b.spec() {
		x = b.must(ops.Upsample2x(x))
	}
	return b.conv(name+".conv", x, c, c, 3, 1, 1)
}

// conv is a k×k convolution with bias, zero padding pad on every side and the official default initialisation.
func (b *builder) conv(name string, x *G.Node, cin, cout, k, stride, pad int) *G.Node {
	return b.convInit(name, x, cin, cout, k, stride, same(pad), 1)
}

// convInit is a convolution with the given padding and init scale (0 means the official near-zero init).
func (b *builder) convInit(name string, x *G.Node, cin, cout, k, stride int, pad ops.Pads, scale float64) *G.Node {
	w := b.param(name+".weight", []int{cout, cin, k, k}, varianceScaling(cin*k*k, cout*k*k, scale))
	bias := b.param(name+".bias", []int{cout}, constInit(0))
	if b.spec() {
		return nil
	}
	y := b.must(ops.Conv2dStoppable(x, w, bias, stride, pad, b.stop))
	b.flops += 2 * float64(y.Shape().TotalSize()*cin*k*k)
	return y
}

// dense is x·Wᵀ + b with W stored [out, in] as in PyTorch.
func (b *builder) dense(name string, x *G.Node, in, out int) *G.Node {
	w := b.param(name+".weight", []int{out, in}, varianceScaling(in, out, 1))
	bias := b.param(name+".bias", []int{out}, constInit(0))
	if b.spec() {
		return nil
	}
	y := b.must(G.Mul(x, b.must(G.Transpose(w, 1, 0))))
	b.flops += 2 * float64(y.Shape().TotalSize()*in)
	return b.must(G.BroadcastAdd(y, b.reshape(bias, 1, out), nil, []byte{0}))
}

// norm is GroupNorm(32, eps 1e-6) with affine parameters.
func (b *builder) norm(name string, x *G.Node, c int) *G.Node {
	gamma := b.param(name+".weight", []int{c}, constInit(1))
	beta := b.param(name+".bias", []int{c}, constInit(0))
	if b.spec() {
		return nil
	}
	return b.must(ops.GroupNorm(x, gamma, beta, Groups, normEps))
}

// normSwish is swish(GroupNorm(x)) as one fused op.
func (b *builder) normSwish(name string, x *G.Node, c int) *G.Node {
	gamma := b.param(name+".weight", []int{c}, constInit(1))
	beta := b.param(name+".bias", []int{c}, constInit(0))
	if b.spec() {
		return nil
	}
	return b.must(ops.GroupNormSwish(x, gamma, beta, Groups, normEps))
}

// swish is x·sigmoid(x).
func (b *builder) swish(x *G.Node) *G.Node {
	if b.spec() {
		return nil
	}
	return b.must(ops.Swish(x))
}

// addChannelwise adds t [N,C] to every pixel of h [N,C,H,W].
func (b *builder) addChannelwise(h, t *G.Node) *G.Node {
	if b.spec() {
		return nil
	}
	return b.must(ops.AddChannels(h, t))
}

// concat joins a and b along channels.
func (b *builder) concat(x, y *G.Node) *G.Node {
	if b.spec() {
		return nil
	}
	return b.must(ops.ConcatChannels(x, y))
}

// add is the elementwise sum.
func (b *builder) add(x, y *G.Node) *G.Node {
	if b.spec() {
		return nil
	}
	return b.must(ops.Add(x, y))
}

// dropout multiplies by a mask the trainer draws each step (0 or 1/(1−p)); identity when not training.
func (b *builder) dropout(x *G.Node) *G.Node {
	if b.spec() || !b.train || b.cfg.Dropout == 0 {
		return x
	}
	m := b.input(fmt.Sprintf("dropout.%d", len(b.masks)), x.Shape()...)
	b.masks = append(b.masks, m)
	return b.must(G.HadamardProd(x, m))
}

const normEps = 1e-6

// same is zero padding p on every side.
func same(p int) ops.Pads { return ops.Pads{Top: p, Bottom: p, Left: p, Right: p} }
