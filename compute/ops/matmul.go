package ops

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// BatchedMatMul returns c[i] = op(a[i]) · op(b[i]) for every i of the leading axis of the
// 3-d tensors a and b, op transposing when tA or tB is set (the attention's two products).
// It replaces gorgonia.BatchedMatMul, which multiplies the batch one matrix after the
// other on one core; here the matrices are spread over all cores, one BLAS call each.
func BatchedMatMul(a, b *gorgonia.Node, tA, tB bool) (*gorgonia.Node, error) {
	op := bmmOp{tA: tA, tB: tB}
	if _, err := op.InferShape(a.Shape(), b.Shape()); err != nil {
		return nil, err
	}
	c, err := gorgonia.ApplyOp(op, a, b)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", op, err)
	}
	return c, nil
}

// bmmOp is the batched product; see BatchedMatMul.
type bmmOp struct {
	pure
	tA, tB bool
}

// dims returns the product's m×k · k×n sizes for a [B, ·, ·] and b [B, ·, ·].
func (op bmmOp) dims(as, bs tensor.Shape) (batch, m, n, k int, err error) {
	if as.Dims() != 3 || bs.Dims() != 3 || as[0] != bs[0] {
		return 0, 0, 0, 0, fmt.Errorf("%v: shapes %v and %v are not two batches of matrices", op, as, bs)
	}
	m, k = as[1], as[2]
	if op.tA {
		m, k = k, m
	}
	kb, n := bs[1], bs[2]
	if op.tB {
		kb, n = n, kb
	}
	if k != kb {
		return 0, 0, 0, 0, fmt.Errorf("%v: shapes %v and %v do not multiply", op, as, bs)
	}
	return as[0], m, n, k, nil
}

func (bmmOp) Arity() int { return 2 }

func (bmmOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(tensorType(3, a), tensorType(3, a), tensorType(3, a))
}

func (op bmmOp) InferShape(in ...gorgonia.DimSizer) (tensor.Shape, error) {
	as, err := shapeOf(op, in, 0)
	if err != nil {
		return nil, err
	}
	bs, err := shapeOf(op, in, 1)
	if err != nil {
		return nil, err
	}
	batch, m, n, _, err := op.dims(as, bs)
	if err != nil {
		return nil, err
	}
	return tensor.Shape{batch, m, n}, nil
}

func (op bmmOp) Do(vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	batch, m, n, _, err := op.dims(in[0].Shape(), in[1].Shape())
	if err != nil {
		return nil, err
	}
	return op.UsePreallocDo(newLike(in[0].Dtype(), tensor.Shape{batch, m, n}), vals...)
}

func (op bmmOp) UsePreallocDo(prealloc gorgonia.Value, vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	a, b := in[0], in[1]
	batch, m, n, k, err := op.dims(a.Shape(), b.Shape())
	if err != nil {
		return nil, err
	}
	out, err := output(op, prealloc, tensor.Shape{batch, m, n}, a.Dtype())
	if err != nil {
		return nil, err
	}
	if a.Dtype() == tensor.Float32 {
		batchedGemm(op.tA, op.tB, batch, m, n, k, a.Float32s(), b.Float32s(), out.Float32s())
	} else {
		batchedGemm(op.tA, op.tB, batch, m, n, k, a.Float64s(), b.Float64s(), out.Float64s())
	}
	return out, nil
}

// batchedGemm computes c[i] = op(a[i]) · op(b[i]) for i < batch, in parallel.
func batchedGemm[T float](tA, tB bool, batch, m, n, k int, a, b, c []T) {
	lda, ldb := k, n
	if tA {
		lda = m
	}
	if tB {
		ldb = k
	}
	parallelFor(batch, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			gemmSerial(tA, tB, m, n, k, 1, a[i*m*k:][:m*k], lda, b[i*k*n:][:k*n], ldb, 0, c[i*m*n:][:m*n], n)
		}
	})
}

func (op bmmOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }
func (op bmmOp) Hashcode() uint32      { return hashOf(op) }
func (op bmmOp) String() string        { return fmt.Sprintf("BatchedMatMul{tA:%v tB:%v}", op.tA, op.tB) }

// DiffWRT reports that the product is differentiable in both inputs.
func (bmmOp) DiffWRT(int) []bool { return []bool{true, true} }

// SymDiff returns the gradients of c = op(a)·op(b), themselves batched products:
// da = dc·op(b)ᵀ (or op(b)·dcᵀ when a is transposed) and db = op(a)ᵀ·dc (or dcᵀ·op(a)).
func (op bmmOp) SymDiff(inputs gorgonia.Nodes, _, grad *gorgonia.Node) (gorgonia.Nodes, error) {
	if len(inputs) != 2 {
		return nil, fmt.Errorf("%v: expected 2 inputs, got %d", op, len(inputs))
	}
	a, b := inputs[0], inputs[1]
	var da, db *gorgonia.Node
	var err error
	if op.tA {
		da, err = BatchedMatMul(b, grad, op.tB, true)
	} else {
		da, err = BatchedMatMul(grad, b, false, !op.tB)
	}
	if err != nil {
		return nil, err
	}
	if op.tB {
		db, err = BatchedMatMul(grad, a, true, op.tA)
	} else {
		db, err = BatchedMatMul(a, grad, !op.tA, false)
	}
	if err != nil {
		return nil, err
	}
	return gorgonia.Nodes{da, db}, nil
}
