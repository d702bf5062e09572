package compute

// Test hooks for the external tests of this package (compute_test). They are compiled
// into test binaries only.

// LastGradients returns copies of the parameter gradients (before clipping) that the
// last TrainStep on batches of n computed, in Params order, or nil before the first.
func (t *Trainer) LastGradients(n int) [][]float32 {
	f, ok := t.train[n]
	if !ok {
		return nil
	}
	out := make([][]float32, len(f.grads))
	for i, g := range f.grads {
		out[i] = append([]float32(nil), f.prog.float32s(g)...)
	}
	return out
}

// LastDropoutMasks returns copies of the dropout masks that the last TrainStep on
// batches of n drew, in the order the forward pass applies them, or nil before the first.
func (t *Trainer) LastDropoutMasks(n int) [][]float32 {
	f, ok := t.train[n]
	if !ok {
		return nil
	}
	out := make([][]float32, len(f.masks))
	for i, m := range f.masks {
		out[i] = append([]float32(nil), backing(m)...)
	}
	return out
}
