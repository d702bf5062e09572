package weights

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
)

// A restricted unpickler: the opcodes and globals that torch.save writes for
// tensors, dicts, lists and numbers, and nothing that could build an arbitrary
// object. It is modelled on torch's own weights_only unpickler
// (torch/_weights_only_unpickler.py), reads from memory, checks every length
// against the bytes that remain before it allocates, and never calls anything
// named by the file: GLOBAL of anything but the allow-list below is an error.

// Values built by the unpickler.
type (
	pyTuple  []any
	pyList   struct{ items []any }
	pyBigInt []byte // LONG1 of more than 8 bytes, little-endian two's complement
	pyDict   struct {
		keys  []any // string or int64
		vals  []any
		index map[any]int
	}
	// pyGlobal is an allow-listed global (see allowedGlobals).
	pyGlobal struct{ module, name string }
)

func newDict() *pyDict { return &pyDict{index: map[any]int{}} }

func (d *pyDict) set(k, v any) error {
	switch k.(type) {
	case string, int64:
	default:
		return fmt.Errorf("dict key of type %s (only str and int keys are read)", pyType(k))
	}
	if i, ok := d.index[k]; ok {
		d.vals[i] = v
		return nil
	}
	d.index[k] = len(d.keys)
	d.keys = append(d.keys, k)
	d.vals = append(d.vals, v)
	return nil
}

// get returns the value stored under a string key.
func (d *pyDict) get(k string) (any, bool) {
	i, ok := d.index[k]
	if !ok {
		return nil, false
	}
	return d.vals[i], true
}

// storageRef is one storage of a checkpoint: a typed array of numel elements
// that the container (zip record or legacy stream) holds under key.
type storageRef struct {
	dtype    dtype
	key      string
	location string
	numel    int64
	// read copies n bytes of the storage, from byte off on, into dst.
	read func(off int64, dst []byte) error
}

// tensorMeta is a tensor as the pickle describes it: a view of a storage.
type tensorMeta struct {
	storage *storageRef
	offset  int64 // in elements
	shape   []int64
	stride  []int64
}

// allowedGlobals are the only names GLOBAL may refer to: the rebuild functions
// and storage types of torch.save, and OrderedDict.
var allowedGlobals = map[string]bool{
	"collections.OrderedDict":                    true,
	"torch._utils._rebuild_tensor":               true,
	"torch._utils._rebuild_tensor_v2":            true,
	"torch._utils._rebuild_parameter":            true,
	"torch._utils._rebuild_parameter_with_state": true,
}

// storageTypes maps torch's storage classes to element types; the float ones
// can be weights, the others may appear in the rest of a checkpoint (step
// counters) and are only an error if a weight uses them.
var storageTypes = map[string]dtype{
	"FloatStorage":    f32,
	"DoubleStorage":   f64,
	"HalfStorage":     f16,
	"BFloat16Storage": bf16,
	"LongStorage":     i64,
	"IntStorage":      i32,
	"ShortStorage":    i16,
	"CharStorage":     i8,
	"ByteStorage":     u8,
	"BoolStorage":     boolean,
}

// maxGlobalLine bounds the module and name lines of GLOBAL.
const maxGlobalLine = 256

// maxOps bounds the opcodes one pickle may run. Each builds at most one
// object, so this bounds the memory a pickle can make the reader allocate
// beyond its own bytes (a state dict of the 256×256 model runs about 15,000).
const maxOps = 1 << 20

// unpickler reads one pickle from buf at pos.
type unpickler struct {
	buf   []byte
	pos   int
	stack []any
	marks [][]any
	memo  map[uint32]any
	ops   int
	// persistent resolves a persistent id (BINPERSID); nil refuses them.
	persistent func(pid pyTuple) (any, error)
}

func (u *unpickler) fail(op byte, format string, args ...any) error {
	return fmt.Errorf("pickle byte %d (opcode %s): %s", u.pos, opName(op), fmt.Sprintf(format, args...))
}

func (u *unpickler) take(n uint64) ([]byte, bool) {
	if n > uint64(len(u.buf)-u.pos) {
		return nil, false
	}
	b := u.buf[u.pos : u.pos+int(n)]
	u.pos += int(n)
	return b, true
}

func (u *unpickler) push(v any) { u.stack = append(u.stack, v) }

func (u *unpickler) pop() (any, bool) {
	if len(u.stack) == 0 {
		return nil, false
	}
	v := u.stack[len(u.stack)-1]
	u.stack = u.stack[:len(u.stack)-1]
	return v, true
}

func (u *unpickler) popMark() ([]any, bool) {
	if len(u.marks) == 0 {
		return nil, false
	}
	items := u.stack
	u.stack = u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	return items, true
}

// line reads a newline-terminated line of at most maxGlobalLine bytes.
func (u *unpickler) line() (string, bool) {
	for i := u.pos; i < len(u.buf) && i-u.pos <= maxGlobalLine; i++ {
		if u.buf[i] == '\n' {
			s := string(u.buf[u.pos:i])
			u.pos = i + 1
			return s, true
		}
	}
	return "", false
}

// load runs the pickle to its STOP and returns the value it built.
func (u *unpickler) load() (any, error) {
	if u.memo == nil {
		u.memo = map[uint32]any{}
	}
	u.stack, u.marks, u.ops = u.stack[:0], u.marks[:0], 0
	for {
		if u.pos >= len(u.buf) {
			return nil, fmt.Errorf("pickle ends at byte %d before its STOP opcode (truncated?)", u.pos)
		}
		if u.ops++; u.ops > maxOps {
			return nil, fmt.Errorf("pickle runs more than %d opcodes (a state dict runs thousands)", maxOps)
		}
		op := u.buf[u.pos]
		u.pos++
		done, err := u.step(op)
		if err != nil {
			return nil, err
		}
		if done {
			v, ok := u.pop()
			if !ok {
				return nil, u.fail(op, "empty stack at STOP")
			}
			return v, nil
		}
	}
}

// step runs one opcode; it reports true at STOP.
func (u *unpickler) step(op byte) (bool, error) {
	short := func() (bool, error) { return false, u.fail(op, "argument runs past the end of the pickle") }
	underflow := func() (bool, error) { return false, u.fail(op, "stack underflow") }
	switch op {
	case '.': // STOP
		return true, nil
	case 0x80: // PROTO
		b, ok := u.take(1)
		if !ok {
			return short()
		}
		if b[0] > 5 {
			return false, u.fail(op, "protocol %d (at most 5 exists)", b[0])
		}
	case 0x95: // FRAME: a hint for buffered readers; we read from memory.
		b, ok := u.take(8)
		if !ok {
			return short()
		}
		if n := binary.LittleEndian.Uint64(b); n > uint64(len(u.buf)-u.pos) {
			return false, u.fail(op, "frame of %d bytes runs past the end of the pickle", n)
		}
	case '(': // MARK
		u.marks = append(u.marks, u.stack)
		u.stack = nil
	case '0': // POP
		if _, ok := u.pop(); !ok {
			return underflow()
		}
	case 'N':
		u.push(nil)
	case 0x88:
		u.push(true)
	case 0x89:
		u.push(false)
	case 'J': // BININT
		b, ok := u.take(4)
		if !ok {
			return short()
		}
		u.push(int64(int32(binary.LittleEndian.Uint32(b))))
	case 'K': // BININT1
		b, ok := u.take(1)
		if !ok {
			return short()
		}
		u.push(int64(b[0]))
	case 'M': // BININT2
		b, ok := u.take(2)
		if !ok {
			return short()
		}
		u.push(int64(binary.LittleEndian.Uint16(b)))
	case 0x8a: // LONG1
		n, ok := u.take(1)
		if !ok {
			return short()
		}
		b, ok := u.take(uint64(n[0]))
		if !ok {
			return short()
		}
		u.push(decodeLong(b))
	case 'G': // BINFLOAT
		b, ok := u.take(8)
		if !ok {
			return short()
		}
		u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
	case 'X', 0x8c, 0x8d, 'U', 'T', 'C', 'B': // strings and bytes with a length prefix
		var width uint64
		switch op {
		case 0x8c, 'U', 'C':
			width = 1
		case 'X', 'T', 'B':
			width = 4
		case 0x8d:
			width = 8
		}
		lb, ok := u.take(width)
		if !ok {
			return short()
		}
		var n uint64
		for i := len(lb) - 1; i >= 0; i-- {
			n = n<<8 | uint64(lb[i])
		}
		if op == 'T' && int32(n) < 0 {
			return false, u.fail(op, "negative length")
		}
		b, ok := u.take(n)
		if !ok {
			return false, u.fail(op, "string of %d bytes runs past the end of the pickle", n)
		}
		if op == 'C' || op == 'B' {
			u.push(append([]byte(nil), b...))
		} else {
			u.push(string(b))
		}
	case ')':
		u.push(pyTuple{})
	case 't':
		items, ok := u.popMark()
		if !ok {
			return false, u.fail(op, "no MARK")
		}
		u.push(pyTuple(items))
	case 0x85, 0x86, 0x87: // TUPLE1..3
		n := int(op-0x85) + 1
		if len(u.stack) < n {
			return underflow()
		}
		t := append(pyTuple(nil), u.stack[len(u.stack)-n:]...)
		u.stack = append(u.stack[:len(u.stack)-n], t)
	case ']':
		u.push(&pyList{})
	case 'a', 'e': // APPEND, APPENDS
		var items []any
		if op == 'a' {
			v, ok := u.pop()
			if !ok {
				return underflow()
			}
			items = []any{v}
		} else {
			var ok bool
			if items, ok = u.popMark(); !ok {
				return false, u.fail(op, "no MARK")
			}
		}
		if len(u.stack) == 0 {
			return underflow()
		}
		l, ok := u.stack[len(u.stack)-1].(*pyList)
		if !ok {
			return false, u.fail(op, "append to a %s", pyType(u.stack[len(u.stack)-1]))
		}
		l.items = append(l.items, items...)
	case '}':
		u.push(newDict())
	case 's', 'u': // SETITEM, SETITEMS
		var items []any
		if op == 's' {
			if len(u.stack) < 2 {
				return underflow()
			}
			items = append(items, u.stack[len(u.stack)-2:]...)
			u.stack = u.stack[:len(u.stack)-2]
		} else {
			var ok bool
			if items, ok = u.popMark(); !ok {
				return false, u.fail(op, "no MARK")
			}
			if len(items)%2 != 0 {
				return false, u.fail(op, "odd number of items")
			}
		}
		if len(u.stack) == 0 {
			return underflow()
		}
		d, ok := u.stack[len(u.stack)-1].(*pyDict)
		if !ok {
			return false, u.fail(op, "set item of a %s", pyType(u.stack[len(u.stack)-1]))
		}
		for i := 0; i < len(items); i += 2 {
			if err := d.set(items[i], items[i+1]); err != nil {
				return false, u.fail(op, "%v", err)
			}
		}
	case 'q', 'r', 0x94: // BINPUT, LONG_BINPUT, MEMOIZE
		var idx uint32
		switch op {
		case 'q':
			b, ok := u.take(1)
			if !ok {
				return short()
			}
			idx = uint32(b[0])
		case 'r':
			b, ok := u.take(4)
			if !ok {
				return short()
			}
			idx = binary.LittleEndian.Uint32(b)
		default:
			idx = uint32(len(u.memo))
		}
		if len(u.stack) == 0 {
			return underflow()
		}
		u.memo[idx] = u.stack[len(u.stack)-1]
	case 'h', 'j': // BINGET, LONG_BINGET
		var idx uint32
		if op == 'h' {
			b, ok := u.take(1)
			if !ok {
				return short()
			}
			idx = uint32(b[0])
		} else {
			b, ok := u.take(4)
			if !ok {
				return short()
			}
			idx = binary.LittleEndian.Uint32(b)
		}
		v, ok := u.memo[idx]
		if !ok {
			return false, u.fail(op, "memo entry %d was never stored", idx)
		}
		u.push(v)
	case 'c', 0x93: // GLOBAL, STACK_GLOBAL
		var module, name string
		if op == 'c' {
			var ok1, ok2 bool
			module, ok1 = u.line()
			name, ok2 = u.line()
			if !ok1 || !ok2 {
				return false, u.fail(op, "module or name line missing or longer than %d bytes", maxGlobalLine)
			}
		} else {
			if len(u.stack) < 2 {
				return underflow()
			}
			m, ok1 := u.stack[len(u.stack)-2].(string)
			n, ok2 := u.stack[len(u.stack)-1].(string)
			if !ok1 || !ok2 {
				return false, u.fail(op, "module and name must be strings")
			}
			u.stack = u.stack[:len(u.stack)-2]
			module, name = m, n
		}
		g, err := global(module, name)
		if err != nil {
			return false, u.fail(op, "%v", err)
		}
		u.push(g)
	case 'R': // REDUCE
		if len(u.stack) < 2 {
			return underflow()
		}
		args, ok := u.stack[len(u.stack)-1].(pyTuple)
		if !ok {
			return false, u.fail(op, "arguments are a %s, not a tuple", pyType(u.stack[len(u.stack)-1]))
		}
		f, ok := u.stack[len(u.stack)-2].(pyGlobal)
		if !ok {
			return false, u.fail(op, "calls a %s", pyType(u.stack[len(u.stack)-2]))
		}
		v, err := reduce(f, args)
		if err != nil {
			return false, u.fail(op, "%v", err)
		}
		u.stack = append(u.stack[:len(u.stack)-2], v)
	case 'b': // BUILD: only the _metadata attribute torch gives a state dict.
		if len(u.stack) < 2 {
			return underflow()
		}
		if _, ok := u.stack[len(u.stack)-2].(*pyDict); !ok {
			return false, u.fail(op, "sets the state of a %s (only dicts are built)", pyType(u.stack[len(u.stack)-2]))
		}
		u.stack = u.stack[:len(u.stack)-1]
	case 'Q': // BINPERSID
		v, ok := u.pop()
		if !ok {
			return underflow()
		}
		pid, ok := v.(pyTuple)
		if !ok || len(pid) == 0 || pid[0] != "storage" {
			return false, u.fail(op, "persistent id %s is not a storage", describeValue(v))
		}
		if u.persistent == nil {
			return false, u.fail(op, "persistent ids are not allowed here")
		}
		s, err := u.persistent(pid)
		if err != nil {
			return false, u.fail(op, "%v", err)
		}
		u.push(s)
	default:
		return false, u.fail(op, "not used by plain tensor storage; refused")
	}
	return false, nil
}

// global resolves an allow-listed GLOBAL.
func global(module, name string) (any, error) {
	if module == "torch" {
		if _, ok := storageTypes[name]; ok {
			return pyGlobal{module, name}, nil
		}
	}
	if allowedGlobals[module+"."+name] {
		return pyGlobal{module, name}, nil
	}
	return nil, fmt.Errorf("refers to %s.%s, which is not tensor storage: DDPM Studio reads only state dicts "+
		"(tensors in dicts) and never runs code from a file (in Python: torch.save(model.state_dict(), path))",
		module, name)
}

// reduce applies an allow-listed callable.
func reduce(f pyGlobal, args pyTuple) (any, error) {
	full := f.module + "." + f.name
	switch full {
	case "collections.OrderedDict":
		d := newDict()
		if len(args) == 0 {
			return d, nil
		}
		if len(args) == 1 {
			if l, ok := args[0].(*pyList); ok {
				for _, it := range l.items {
					kv, ok := it.(pyTuple)
					if !ok || len(kv) != 2 {
						return nil, fmt.Errorf("OrderedDict item %s is not a pair", describeValue(it))
					}
					if err := d.set(kv[0], kv[1]); err != nil {
						return nil, err
					}
				}
				return d, nil
			}
		}
		return nil, fmt.Errorf("OrderedDict called with %d arguments", len(args))
	case "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2":
		if full == "torch._utils._rebuild_tensor" && len(args) != 4 || full != "torch._utils._rebuild_tensor" && (len(args) < 6 || len(args) > 7) {
			return nil, fmt.Errorf("%s called with %d arguments", full, len(args))
		}
		return rebuildTensor(args)
	case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
		if len(args) < 3 {
			return nil, fmt.Errorf("%s called with %d arguments", full, len(args))
		}
		t, ok := args[0].(*tensorMeta)
		if !ok {
			return nil, fmt.Errorf("%s of a %s", full, pyType(args[0]))
		}
		return t, nil
	}
	return nil, fmt.Errorf("%s is a type, not a function to call", full)
}

// rebuildTensor checks the arguments (storage, offset, size, stride, …) of
// _rebuild_tensor(_v2): the view must lie inside its storage.
func rebuildTensor(args pyTuple) (*tensorMeta, error) {
	s, ok := args[0].(*storageRef)
	if !ok {
		return nil, fmt.Errorf("tensor storage is a %s", pyType(args[0]))
	}
	off, ok := args[1].(int64)
	if !ok || off < 0 {
		return nil, fmt.Errorf("tensor storage offset %s", describeValue(args[1]))
	}
	shape, err := intTuple(args[2], "size")
	if err != nil {
		return nil, err
	}
	stride, err := intTuple(args[3], "stride")
	if err != nil {
		return nil, err
	}
	if len(shape) != len(stride) {
		return nil, fmt.Errorf("tensor size %v and stride %v differ in length", shape, stride)
	}
	t := &tensorMeta{storage: s, offset: off, shape: shape, stride: stride}
	// extent = offset + Σ (size_i − 1)·stride_i + 1, in elements, checked for overflow.
	numel, err := checkedNumel(shape)
	if err != nil {
		return nil, err
	}
	end := off
	if numel > 0 {
		for i, n := range shape {
			if stride[i] < 0 {
				return nil, fmt.Errorf("tensor stride %v is negative", stride)
			}
			if stride[i] > 0 && n-1 > (math.MaxInt64-end)/stride[i] {
				return nil, fmt.Errorf("tensor size %v with stride %v overflows", shape, stride)
			}
			end += (n - 1) * stride[i]
		}
		end++
	}
	if end > s.numel {
		return nil, fmt.Errorf("tensor of size %v, stride %v at offset %d needs %d elements; its storage %q has %d",
			shape, stride, off, end, s.key, s.numel)
	}
	return t, nil
}

// maxDim bounds each tensor dimension and maxNumel the elements of one tensor (2^34, 64 GiB of float32).
const (
	maxDim   = 1 << 31
	maxNumel = 1 << 34
)

func checkedNumel(shape []int64) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 || d > maxDim {
			return 0, fmt.Errorf("tensor size %v has an impossible dimension", shape)
		}
		if d != 0 && n > maxNumel/d {
			return 0, fmt.Errorf("tensor size %v has more than %d elements", shape, int64(maxNumel))
		}
		n *= d
	}
	return n, nil
}

func intTuple(v any, what string) ([]int64, error) {
	t, ok := v.(pyTuple)
	if !ok {
		return nil, fmt.Errorf("tensor %s is a %s, not a tuple", what, pyType(v))
	}
	out := make([]int64, len(t))
	for i, x := range t {
		n, ok := x.(int64)
		if !ok {
			return nil, fmt.Errorf("tensor %s %s holds a %s", what, describeValue(v), pyType(x))
		}
		out[i] = n
	}
	return out, nil
}

// decodeLong decodes LONG1's little-endian two's complement; beyond 8 bytes it keeps the bytes.
func decodeLong(b []byte) any {
	if len(b) > 8 {
		return pyBigInt(append([]byte(nil), b...))
	}
	if len(b) == 0 {
		return int64(0)
	}
	var u uint64
	for i := len(b) - 1; i >= 0; i-- {
		u = u<<8 | uint64(b[i])
	}
	if b[len(b)-1]&0x80 != 0 && len(b) < 8 { // sign-extend
		u |= ^uint64(0) << (8 * uint(len(b)))
	}
	return int64(u)
}

func pyType(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int64, pyBigInt:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case []byte:
		return "bytes"
	case pyTuple:
		return "tuple"
	case *pyList:
		return "list"
	case *pyDict:
		return "dict"
	case pyGlobal:
		return v.module + "." + v.name
	case *storageRef:
		return "storage"
	case *tensorMeta:
		return "tensor"
	}
	return fmt.Sprintf("%T", v)
}

func describeValue(v any) string {
	switch v := v.(type) {
	case int64:
		return strconv.FormatInt(v, 10)
	case string:
		if len(v) > 40 {
			v = v[:40] + "…"
		}
		return strconv.Quote(v)
	case pyTuple:
		if len(v) > 6 {
			return fmt.Sprintf("a tuple of %d items", len(v))
		}
		s := "("
		for i, x := range v {
			if i > 0 {
				s += ", "
			}
			s += describeValue(x)
		}
		return s + ")"
	}
	return "a " + pyType(v)
}

var opNames = map[byte]string{
	'(': "MARK", '.': "STOP", '0': "POP", '1': "POP_MARK", '2': "DUP", 'F': "FLOAT", 'I': "INT",
	'J': "BININT", 'K': "BININT1", 'L': "LONG", 'M': "BININT2", 'N': "NONE", 'P': "PERSID",
	'Q': "BINPERSID", 'R': "REDUCE", 'S': "STRING", 'T': "BINSTRING", 'U': "SHORT_BINSTRING",
	'V': "UNICODE", 'X': "BINUNICODE", 'a': "APPEND", 'b': "BUILD", 'c': "GLOBAL", 'd': "DICT",
	'}': "EMPTY_DICT", 'e': "APPENDS", 'g': "GET", 'h': "BINGET", 'i': "INST", 'j': "LONG_BINGET",
	'l': "LIST", ']': "EMPTY_LIST", 'o': "OBJ", 'p': "PUT", 'q': "BINPUT", 'r': "LONG_BINPUT",
	's': "SETITEM", 't': "TUPLE", ')': "EMPTY_TUPLE", 'u': "SETITEMS", 'G': "BINFLOAT",
	0x80: "PROTO", 0x81: "NEWOBJ", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x85: "TUPLE1",
	0x86: "TUPLE2", 0x87: "TUPLE3", 0x88: "NEWTRUE", 0x89: "NEWFALSE", 0x8a: "LONG1", 0x8b: "LONG4",
	'B': "BINBYTES", 'C': "SHORT_BINBYTES", 0x8c: "SHORT_BINUNICODE", 0x8d: "BINUNICODE8",
	0x8e: "BINBYTES8", 0x8f: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET", 0x92: "NEWOBJ_EX",
	0x93: "STACK_GLOBAL", 0x94: "MEMOIZE", 0x95: "FRAME", 0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER",
	0x98: "READONLY_BUFFER",
}

func opName(op byte) string {
	if n, ok := opNames[op]; ok {
		return n
	}
	return fmt.Sprintf("0x%02x", op)
}
