package compute

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unsafe"

	"github.com/nlpodyssey/safetensors"

	"github.com/ddpm-studio/ddpm-studio/internal/atomicfile"
)

// Checkpoint files, in the interchange naming: model.safetensors and ema.safetensors hold
// float32 weights under the PyTorch port's state_dict names; optimizer.safetensors holds the
// Adam moments as "m.<name>" and "v.<name>"; state.json holds everything else.
const (
	ModelFile     = "model.safetensors"
	EMAFile       = "ema.safetensors"
	OptimizerFile = "optimizer.safetensors"
	StateFile     = "state.json"
	checkpoints   = "checkpoints"
	keepLast      = 2
)

// State is the non-tensor part of a checkpoint.
type State struct {
	Step   int64           `json:"step"`
	Config Config          `json:"config"`
	Optim  OptimConfig     `json:"optim"`
	RNG    []byte          `json:"rng"`   // dropout generator (PCG, binary)
	Extra  json.RawMessage `json:"extra"` // the caller's own state (data order, schedule, …)
}

// f32view lets a float32 slice be serialised as a safetensors F32 tensor.
type f32view struct {
	shape []uint64
	data  []float32
}

func (v f32view) DType() safetensors.DType { return safetensors.F32 }
func (v f32view) Shape() []uint64          { return v.shape }
func (v f32view) DataLen() uint64          { return uint64(4 * len(v.data)) }
func (v f32view) Data() []byte {
	if len(v.data) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v.data[0])), 4*len(v.data)) // little-endian on amd64/arm64
}

func shape64(s []int) []uint64 {
	out := make([]uint64, len(s))
	for i, d := range s {
		out[i] = uint64(d)
	}
	return out
}

// SaveWeights writes data (one slice per parameter of net, in order) as a float32 safetensors file.
func SaveWeights(path string, net *UNet, data [][]float32, meta map[string]string) error {
	views := make(map[string]f32view, len(net.Params))
	for i, p := range net.Params {
		views[p.Name] = f32view{shape64(p.Shape), data[i]}
	}
	return writeSafetensors(path, views, meta)
}

func writeSafetensors(path string, views map[string]f32view, meta map[string]string) error {
	err := atomicfile.WriteFile(path, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<20)
		if err := safetensors.SerializeToWriter(views, meta, bw); err != nil {
			return err
		}
		return bw.Flush()
	})
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// readSafetensors returns the float32 tensors of a file by name.
func readSafetensors(path string) (map[string]safetensors.TensorView, error) {
	buf, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	st, err := safetensors.Deserialize(buf)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	out := map[string]safetensors.TensorView{}
	for _, nt := range st.Tensors() {
		out[nt.Name] = nt.TensorView
	}
	return out, nil
}

// copyTensor checks a stored tensor against a parameter and copies it into dst.
func copyTensor(dst []float32, name string, shape []int, tv safetensors.TensorView) error {
	if !slices.Equal(tv.Shape(), shape64(shape)) {
		return fmt.Errorf("%s: shape %v in file, model needs %v", name, tv.Shape(), shape)
	}
	raw := tv.Data()
	switch tv.DType() {
	case safetensors.F32:
		copy(dst, unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(raw))), len(dst)))
	case safetensors.F64:
		src := unsafe.Slice((*float64)(unsafe.Pointer(unsafe.SliceData(raw))), len(dst))
		for i, v := range src {
			dst[i] = float32(v)
		}
	default:
		return fmt.Errorf("%s: dtype %v, want F32 or F64", name, tv.DType())
	}
	return nil
}

// LoadWeights reads a safetensors file into dst (one slice per parameter of net, in order),
// matching tensors by name. Missing, extra or mis-shaped tensors are errors.
func LoadWeights(path string, net *UNet, dst [][]float32) error {
	tensors, err := readSafetensors(path)
	if err != nil {
		return fmt.Errorf("load weights: %w", err)
	}
	var missing []string
	for i, p := range net.Params {
		tv, ok := tensors[p.Name]
		if !ok {
			missing = append(missing, p.Name)
			continue
		}
		if err := copyTensor(dst[i], p.Name, p.Shape, tv); err != nil {
			return fmt.Errorf("load weights %s: %w", path, err)
		}
		delete(tensors, p.Name)
	}
	if len(missing) > 0 || len(tensors) > 0 {
		var extra []string
		for n := range tensors {
			extra = append(extra, n)
		}
		sort.Strings(extra)
		return fmt.Errorf("load weights %s: names do not match the model (%s): missing %s; unexpected %s",
			path, net.Config, listSome(missing), listSome(extra))
	}
	return nil
}

func listSome(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	if len(names) > 4 {
		return fmt.Sprintf("%s, … (%d in all)", strings.Join(names[:4], ", "), len(names))
	}
	return strings.Join(names, ", ")
}

// LoadSafetensors loads weights in the interchange naming into the model.
func (u *UNet) LoadSafetensors(path string) error {
	return LoadWeights(path, u, u.data())
}

func (u *UNet) data() [][]float32 {
	d := make([][]float32, len(u.Params))
	for i, p := range u.Params {
		d[i] = p.Data
	}
	return d
}

// SaveCheckpoint writes the trainer's full state to RUNDIR/checkpoints/step-NNNNNNNN.
// The directory is filled under a temporary name, synced and renamed, so a checkpoint
// either exists whole or not at all; older checkpoints beyond the last two are removed.
func SaveCheckpoint(runDir string, t *Trainer, extra json.RawMessage) (string, error) {
	if err := t.SyncHost(); err != nil {
		return "", fmt.Errorf("save checkpoint: %w", err)
	}
	root := filepath.Join(runDir, checkpoints)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("save checkpoint: %w", err)
	}
	final := filepath.Join(root, fmt.Sprintf("step-%08d", t.Step))
	if stale, _ := filepath.Glob(filepath.Join(root, ".tmp-*")); len(stale) > 0 {
		for _, d := range stale { // left by a killed process
			os.RemoveAll(d)
		}
	}
	tmp, err := os.MkdirTemp(root, ".tmp-")
	if err != nil {
		return "", fmt.Errorf("save checkpoint: %w", err)
	}
	defer os.RemoveAll(tmp)
	meta := map[string]string{"format": "pt", "step": strconv.FormatInt(t.Step, 10)}
	net := t.Net
	if err := SaveWeights(filepath.Join(tmp, ModelFile), net, net.data(), meta); err != nil {
		return "", err
	}
	if err := SaveWeights(filepath.Join(tmp, EMAFile), net, t.EMA, meta); err != nil {
		return "", err
	}
	views := map[string]f32view{}
	for i, p := range net.Params {
		views["m."+p.Name] = f32view{shape64(p.Shape), t.M[i]}
		views["v."+p.Name] = f32view{shape64(p.Shape), t.V[i]}
	}
	if err := writeSafetensors(filepath.Join(tmp, OptimizerFile), views, meta); err != nil {
		return "", err
	}
	rng, err := t.RNGState()
	if err != nil {
		return "", err
	}
	st := State{Step: t.Step, Config: net.Config, Optim: t.Optim, RNG: rng, Extra: extra}
	js, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return "", err
	}
	if err := atomicfile.WriteFile(filepath.Join(tmp, StateFile), func(w io.Writer) error {
		_, err := w.Write(append(js, '\n'))
		return err
	}); err != nil {
		return "", fmt.Errorf("save checkpoint: %w", err)
	}
	if err := os.RemoveAll(final); err != nil {
		return "", fmt.Errorf("save checkpoint: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("save checkpoint: %w", err)
	}
	if err := syncDir(root); err != nil {
		return "", fmt.Errorf("save checkpoint: %w", err)
	}
	all, _ := listCheckpoints(runDir)
	for len(all) > keepLast {
		os.RemoveAll(all[0])
		all = all[1:]
	}
	return final, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// listCheckpoints returns the complete checkpoint directories of a run, oldest first.
func listCheckpoints(runDir string) ([]string, error) {
	root := filepath.Join(runDir, checkpoints)
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "step-") {
			continue
		}
		if _, err := os.Stat(filepath.Join(root, e.Name(), StateFile)); err == nil {
			dirs = append(dirs, filepath.Join(root, e.Name()))
		}
	}
	sort.Strings(dirs) // zero-padded step numbers sort in order
	return dirs, nil
}

// LatestCheckpoint returns the newest complete checkpoint of a run, or "" if there is none.
func LatestCheckpoint(runDir string) string {
	dirs, err := listCheckpoints(runDir)
	if err != nil || len(dirs) == 0 {
		return ""
	}
	return dirs[len(dirs)-1]
}

// ReadState reads a checkpoint's state.json.
func ReadState(dir string) (State, error) {
	var st State
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return st, fmt.Errorf("read checkpoint: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("read checkpoint %s: %w", filepath.Join(dir, StateFile), err)
	}
	return st, nil
}

// LoadCheckpoint rebuilds a trainer, exactly as it was saved, from a checkpoint directory.
func LoadCheckpoint(dir string) (*Trainer, State, error) {
	st, err := ReadState(dir)
	if err != nil {
		return nil, st, err
	}
	net, err := NewUNet(st.Config, 0)
	if err != nil {
		return nil, st, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	t := NewTrainer(net, st.Optim, 0)
	t.Step = st.Step
	if err := t.SetRNGState(st.RNG); err != nil {
		return nil, st, fmt.Errorf("checkpoint %s: rng: %w", dir, err)
	}
	if err := LoadWeights(filepath.Join(dir, ModelFile), net, net.data()); err != nil {
		return nil, st, err
	}
	if err := LoadWeights(filepath.Join(dir, EMAFile), net, t.EMA); err != nil {
		return nil, st, err
	}
	opt, err := readSafetensors(filepath.Join(dir, OptimizerFile))
	if err != nil {
		return nil, st, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	for i, p := range net.Params {
		for _, mv := range []struct {
			key string
			dst []float32
		}{{"m." + p.Name, t.M[i]}, {"v." + p.Name, t.V[i]}} {
			tv, ok := opt[mv.key]
			if !ok {
				return nil, st, fmt.Errorf("checkpoint %s: optimizer state lacks %s", dir, mv.key)
			}
			if err := copyTensor(mv.dst, mv.key, p.Shape, tv); err != nil {
				return nil, st, fmt.Errorf("checkpoint %s: %w", dir, err)
			}
		}
	}
	return t, st, nil
}
