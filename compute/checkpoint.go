package compute

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
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
	return atomicfile.WriteFile(path, func(w io.Writer) error { // its errors name path
		bw := bufio.NewWriterSize(w, 1<<20)
		if err := safetensors.SerializeToWriter(views, meta, bw); err != nil {
			return err
		}
		return bw.Flush()
	})
}

// weightSpecs pairs each parameter with its destination data[i] (nil: headers only).
func weightSpecs(params []*Param, data [][]float32) []tensorSpec {
	specs := make([]tensorSpec, len(params))
	for i, p := range params {
		specs[i] = tensorSpec{name: p.Name, shape: p.Shape}
		if data != nil {
			specs[i].dst = data[i]
		}
	}
	return specs
}

// optimizerSpecs pairs Adam's moments "m.<name>" and "v.<name>" with m[i] and v[i] (nil: headers only).
func optimizerSpecs(params []*Param, m, v [][]float32) []tensorSpec {
	specs := make([]tensorSpec, 0, 2*len(params))
	for i, p := range params {
		sm, sv := tensorSpec{name: "m." + p.Name, shape: p.Shape}, tensorSpec{name: "v." + p.Name, shape: p.Shape}
		if m != nil {
			sm.dst, sv.dst = m[i], v[i]
		}
		specs = append(specs, sm, sv)
	}
	return specs
}

// LoadWeights reads a safetensors file into dst (one slice per parameter of net, in order),
// matching tensors by name. Missing, extra or mis-shaped tensors, a damaged file and values
// that are not finite are errors; the names, shapes and sizes are checked before anything
// is read into dst.
func LoadWeights(path string, net *UNet, dst [][]float32) error {
	return readSafetensorsFile(path, weightSpecs(net.Params, dst), "weights")
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

// A run's checkpoints live in RUNDIR/checkpoints:
//
//	step-NNNNNNNN/                    a checkpoint: state.json and the three weights files
//	.tmp-*/                           one being written or removed, or left so by a killed
//	                                  process; the next save removes it
//	step-NNNNNNNN.replaced-UNIXTIME/  a directory of the same step that a later save found
//	                                  in its way: moved aside, never removed automatically
//
// A checkpoint is written under a .tmp- name and renamed into place, and removed by renaming
// it to a .tmp- name first, so readers see whole checkpoints or none. Rotation keeps the two
// newest intact checkpoints up to the one just saved and removes only intact ones older
// than those; a damaged directory that holds weights is left for the user.

const (
	// maxStateSize bounds state.json (a run's state and its list of image files).
	maxStateSize = 64 << 20
	// readRetries bounds how often a reader lists the checkpoints again when the one it
	// was reading vanished (a writer rotated it away).
	readRetries = 10
)

// ErrNoCheckpoint is wrapped by the loaders' error for a run without any checkpoint.
var ErrNoCheckpoint = errors.New("no checkpoint")

// ckptDir is a directory named step-N.
type ckptDir struct {
	path string
	step int64
}

func stepName(step int64) string { return fmt.Sprintf("step-%08d", step) }

// parseStepName returns N for a name step-N (digits only).
func parseStepName(name string) (int64, bool) {
	digits, ok := strings.CutPrefix(name, "step-")
	if !ok || digits == "" || strings.Trim(digits, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	return n, err == nil
}

// stepDirs lists the directories named step-N of a run, complete or not, newest first.
func stepDirs(runDir string) ([]ckptDir, error) {
	root := filepath.Join(runDir, checkpoints)
	entries, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoints of %s: %w", runDir, err)
	}
	var dirs []ckptDir
	for _, e := range entries {
		if step, ok := parseStepName(e.Name()); ok && e.IsDir() {
			dirs = append(dirs, ckptDir{filepath.Join(root, e.Name()), step})
		}
	}
	slices.SortFunc(dirs, func(a, b ckptDir) int { return cmp.Compare(b.step, a.step) })
	return dirs, nil
}

// LatestCheckpoint returns the newest checkpoint directory of a run that has a state.json,
// or "" if there is none. It does not check the weights: the loaders do (LoadLatest,
// LoadLatestForSampling), and fall back to older checkpoints when they are damaged.
func LatestCheckpoint(runDir string) string {
	dirs, _ := stepDirs(runDir)
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d.path, StateFile)); err == nil {
			return d.path
		}
	}
	return ""
}

// ReadState reads a checkpoint's state.json.
func ReadState(dir string) (State, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return State{}, fmt.Errorf("read checkpoint: %w", err)
	}
	defer root.Close()
	return readState(root, dir)
}

// readState reads and checks state.json of the checkpoint open as root.
func readState(root *os.Root, dir string) (State, error) {
	var st State
	path := filepath.Join(dir, StateFile)
	f, err := root.Open(StateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return st, fmt.Errorf("%s has no %s (a save that never finished, or a deleted file)", dir, StateFile)
	}
	if err != nil {
		return st, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStateSize+1))
	switch {
	case err != nil:
		return st, fmt.Errorf("read %s: %w", path, err)
	case len(b) > maxStateSize:
		return st, damaged(path, "it is larger than %s, far more than a checkpoint's state takes", bytesize(maxStateSize))
	case len(b) == 0:
		return st, damaged(path, "it is empty")
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, damaged(path, "it is not valid JSON (%v)", err)
	}
	if st.Step < 0 {
		return st, damaged(path, "its step is %d", st.Step)
	}
	if err := st.Config.Validate(); err != nil {
		return st, damaged(path, "its model configuration cannot be built: %v", err)
	}
	return st, nil
}

// paramShapes declares the parameters of cfg (names and shapes, no values).
func paramShapes(cfg Config) []*Param {
	var ps []*Param
	b := &builder{cfg: cfg, params: &ps, byName: map[string]*Param{}, noData: true}
	b.unet(nil, nil)
	return ps
}

// ckptReader opens the files of one checkpoint directory through an os.Root, so that every
// file comes from the same directory even if it is renamed meanwhile.
type ckptReader struct {
	root  *os.Root
	dir   string
	files []*os.File
}

func (r *ckptReader) close() {
	for _, f := range r.files {
		f.Close()
	}
}

// header opens a weights file of the checkpoint and checks its header against specs.
func (r *ckptReader) header(name string, specs []tensorSpec, what string) (*stFile, error) {
	path := filepath.Join(r.dir, name)
	f, err := r.root.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s is missing", path)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	r.files = append(r.files, f)
	s, err := readHeader(f, path)
	if err != nil {
		return nil, err
	}
	return s, s.match(specs, what)
}

// loadTrainer reads a whole checkpoint: state, weights, EMA and Adam's moments.
func loadTrainer(root *os.Root, dir string) (*Trainer, State, error) {
	r := &ckptReader{root: root, dir: dir}
	defer r.close()
	st, err := readState(root, dir)
	if err != nil {
		return nil, st, err
	}
	shapes := paramShapes(st.Config)
	model, err := r.header(ModelFile, weightSpecs(shapes, nil), "weights")
	if err != nil {
		return nil, st, err
	}
	ema, err := r.header(EMAFile, weightSpecs(shapes, nil), "EMA weights")
	if err != nil {
		return nil, st, err
	}
	opt, err := r.header(OptimizerFile, optimizerSpecs(shapes, nil, nil), "optimizer state")
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
		return nil, st, damaged(filepath.Join(dir, StateFile), "its dropout generator state cannot be read (%v)", err)
	}
	if err := model.read(weightSpecs(net.Params, net.data())); err != nil {
		return nil, st, err
	}
	if err := ema.read(weightSpecs(net.Params, t.EMA)); err != nil {
		return nil, st, err
	}
	if err := opt.read(optimizerSpecs(net.Params, t.M, t.V)); err != nil {
		return nil, st, err
	}
	return t, st, nil
}

// loadSampler reads what sampling needs: the state and the EMA (ema) or the raw weights.
func loadSampler(root *os.Root, dir string, ema bool) (*UNet, State, error) {
	r := &ckptReader{root: root, dir: dir}
	defer r.close()
	st, err := readState(root, dir)
	if err != nil {
		return nil, st, err
	}
	file, what := ModelFile, "weights"
	if ema {
		file, what = EMAFile, "EMA weights"
	}
	w, err := r.header(file, weightSpecs(paramShapes(st.Config), nil), what)
	if err != nil {
		return nil, st, err
	}
	net, err := NewUNet(st.Config, 0)
	if err != nil {
		return nil, st, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	if err := w.read(weightSpecs(net.Params, net.data())); err != nil {
		return nil, st, err
	}
	return net, st, nil
}

// checkStructure tells why the checkpoint in dir is not intact, as far as its state and
// the headers and sizes of its three weights files tell without reading the tensors.
func checkStructure(dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	r := &ckptReader{root: root, dir: dir}
	defer r.close()
	st, err := readState(root, dir)
	if err != nil {
		return err
	}
	shapes := paramShapes(st.Config)
	for _, f := range []struct {
		name, what string
		specs      []tensorSpec
	}{
		{ModelFile, "weights", weightSpecs(shapes, nil)},
		{EMAFile, "EMA weights", weightSpecs(shapes, nil)},
		{OptimizerFile, "optimizer state", optimizerSpecs(shapes, nil, nil)},
	} {
		if _, err := r.header(f.name, f.specs, f.what); err != nil {
			return err
		}
	}
	return nil
}

// LoadCheckpoint rebuilds a trainer, exactly as it was saved, from a checkpoint directory.
func LoadCheckpoint(dir string) (*Trainer, State, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, State{}, fmt.Errorf("read checkpoint: %w", err)
	}
	defer root.Close()
	return loadTrainer(root, dir)
}

// LoadForSampling reads from a checkpoint directory only what sampling needs: its state
// and the EMA weights (ema) or the raw ones. The optimizer's file is not read.
func LoadForSampling(dir string, ema bool) (*UNet, State, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, State{}, fmt.Errorf("read checkpoint: %w", err)
	}
	defer root.Close()
	return loadSampler(root, dir, ema)
}

// Loaded is the checkpoint LoadLatest or LoadLatestForSampling read.
type Loaded struct {
	Dir     string   // the checkpoint directory read
	State   State    // its state.json
	Trainer *Trainer // LoadLatest: the trainer, exactly as saved; nil from LoadLatestForSampling
	Net     *UNet    // the network: Trainer.Net, or the weights LoadLatestForSampling was asked for
	// Warnings says, for each newer checkpoint passed over, which file is damaged and how,
	// and which checkpoint is used instead; callers show them to the user.
	Warnings []string
}

// LoadLatest loads the newest intact checkpoint of a run for training. A newer checkpoint
// that cannot be loaded (a damaged or missing file, values that are not finite) is passed
// over with a warning; a checkpoint that vanishes while it is read (rotated away by a
// process that is saving) makes it start again from the newest. The error wraps
// ErrNoCheckpoint when the run has no checkpoint at all.
func LoadLatest(runDir string) (Loaded, error) {
	var l Loaded
	dir, warnings, err := newestIntact(runDir, func(root *os.Root, dir string) error {
		t, st, err := loadTrainer(root, dir)
		if err == nil {
			l = Loaded{Trainer: t, Net: t.Net, State: st}
		}
		return err
	})
	l.Dir, l.Warnings = dir, warnings
	return l, err
}

// LoadLatestForSampling is LoadLatest for sampling: it reads only the state and the EMA
// weights (ema) or the raw ones, so a damaged optimizer file does not matter.
func LoadLatestForSampling(runDir string, ema bool) (Loaded, error) {
	var l Loaded
	dir, warnings, err := newestIntact(runDir, func(root *os.Root, dir string) error {
		net, st, err := loadSampler(root, dir, ema)
		if err == nil {
			l = Loaded{Net: net, State: st}
		}
		return err
	})
	l.Dir, l.Warnings = dir, warnings
	return l, err
}

// LatestState reads the state of the newest checkpoint of a run whose state.json reads,
// listing again if the checkpoint vanishes before it is read.
func LatestState(runDir string) (string, State, error) {
	var st State
	dir, _, err := newestIntact(runDir, func(root *os.Root, dir string) (err error) {
		st, err = readState(root, dir)
		return err
	})
	return dir, st, err
}

// testHookLoad, when a test sets it, runs between a reader's opening a checkpoint
// directory and its reading the files.
var testHookLoad func(dir string)

// errVanished marks a checkpoint that was removed or replaced while it was read.
var errVanished = errors.New("checkpoint vanished while being read")

// newestIntact tries load on the checkpoints of runDir, newest first, and returns the
// first it accepts with a warning for each newer one it did not.
func newestIntact(runDir string, load func(root *os.Root, dir string) error) (string, []string, error) {
	for range readRetries {
		dirs, err := stepDirs(runDir)
		if err != nil {
			return "", nil, err
		}
		if len(dirs) == 0 {
			return "", nil, fmt.Errorf("run %s: %w", runDir, ErrNoCheckpoint)
		}
		var reasons []string
		for _, d := range dirs {
			err := loadDir(d.path, load)
			if err == nil {
				warnings := make([]string, len(reasons))
				for i, r := range reasons {
					warnings[i] = fmt.Sprintf("%s; using the older checkpoint %s instead", r, d.path)
				}
				return d.path, warnings, nil
			}
			if errors.Is(err, errVanished) {
				reasons = nil
				break
			}
			reasons = append(reasons, err.Error())
		}
		if reasons != nil {
			return "", nil, fmt.Errorf("run %s has no intact checkpoint: %s", runDir, strings.Join(reasons, "; "))
		}
	}
	return "", nil, fmt.Errorf("the checkpoints of %s kept vanishing while being read (is another process saving them faster than they can be read?)", runDir)
}

// loadDir runs load on the checkpoint in dir, and reports errVanished if the directory
// was removed or replaced meanwhile.
func loadDir(dir string, load func(root *os.Root, dir string) error) error {
	root, err := os.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return errVanished
	}
	if err != nil {
		return fmt.Errorf("read checkpoint: %w", err)
	}
	defer root.Close()
	if testHookLoad != nil {
		testHookLoad(dir)
	}
	err = load(root, dir)
	if err != nil {
		a, errA := root.Stat(".")
		b, errB := os.Stat(dir)
		if errA != nil || errB != nil || !os.SameFile(a, b) {
			return errVanished
		}
	}
	return err
}

// savedTensor is one tensor SaveCheckpoint writes.
type savedTensor struct {
	file, name string
	shape      []int
	data       []float32
}

// SaveCheckpoint writes the trainer's full state to RUNDIR/checkpoints/step-NNNNNNNN and
// returns that directory, with warnings for what else it did that the user should know.
//
// It refuses to write a tensor that holds Inf or NaN, so the newest checkpoint stays a
// usable one. It checks the free disk space first; if it is short, it removes beforehand
// the older checkpoints rotation would remove after the save (never the newest intact
// one) when that makes enough room, and otherwise says how much is needed and free. The
// checkpoint is filled under a temporary name, synced and renamed, so it exists whole or
// not at all; a directory of the same step is moved aside (step-N.replaced-UNIXTIME), not
// deleted. Afterwards the two newest intact checkpoints up to this one are kept, older
// intact ones removed.
func SaveCheckpoint(runDir string, t *Trainer, extra json.RawMessage) (string, []string, error) {
	name := stepName(t.Step)
	root := filepath.Join(runDir, checkpoints)
	final := filepath.Join(root, name)
	fail := func(err error) (string, []string, error) {
		return "", nil, fmt.Errorf("save checkpoint %s: %w", final, err)
	}
	if err := t.SyncHost(); err != nil { // a device trainer's state comes back to the host slices
		return fail(err)
	}
	net := t.Net
	var tensors []savedTensor
	for i, p := range net.Params {
		tensors = append(tensors, savedTensor{ModelFile, p.Name, p.Shape, p.Data}, savedTensor{EMAFile, p.Name, p.Shape, t.EMA[i]},
			savedTensor{OptimizerFile, "m." + p.Name, p.Shape, t.M[i]}, savedTensor{OptimizerFile, "v." + p.Name, p.Shape, t.V[i]})
	}
	for _, st := range tensors {
		if n, first := countNonFinite(st.data); n > 0 {
			return fail(fmt.Errorf("refusing to write %s: tensor %q holds %s%s",
				st.file, st.name, nonFiniteWords(n, first), kept(runDir)))
		}
	}
	rng, err := t.RNGState()
	if err != nil {
		return fail(err)
	}
	js, err := json.MarshalIndent(State{Step: t.Step, Config: net.Config, Optim: t.Optim, RNG: rng, Extra: extra}, "", "  ")
	if err != nil {
		return fail(err)
	}
	js = append(js, '\n')
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fail(err)
	}
	removeStale(root)
	need := checkpointSize(tensors, len(js))
	warnings, err := makeRoom(runDir, t.Step, need)
	if err != nil {
		return fail(err)
	}
	full := func(err error, what string) error {
		if !isDiskFull(err) {
			return err
		}
		free, _ := freeSpace(root)
		return fmt.Errorf("the disk holding %s is full: it filled up while writing %s (a checkpoint of this model takes about %s, %s is free now), and nothing was saved: free some space%s (%w)",
			root, what, bytesize(need), bytesize(free), kept(runDir), err)
	}
	tmp, err := os.MkdirTemp(root, ".tmp-")
	if err != nil {
		return fail(full(err, "a temporary directory"))
	}
	defer os.RemoveAll(tmp)
	meta := map[string]string{"format": "pt", "step": strconv.FormatInt(t.Step, 10)}
	for _, file := range []string{ModelFile, EMAFile, OptimizerFile} {
		views := map[string]f32view{}
		for _, st := range tensors {
			if st.file == file {
				views[st.name] = f32view{shape64(st.shape), st.data}
			}
		}
		if err := writeSafetensors(filepath.Join(tmp, file), views, meta); err != nil {
			return fail(full(err, file))
		}
	}
	if err := atomicfile.WriteFile(filepath.Join(tmp, StateFile), func(w io.Writer) error {
		_, err := w.Write(js)
		return err
	}); err != nil {
		return fail(full(err, StateFile))
	}
	if _, err := os.Lstat(final); err == nil {
		w, err := moveAside(final)
		if err != nil {
			return fail(err)
		}
		warnings = append(warnings, w)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fail(err)
	}
	if err := atomicfile.SyncDir(root); err != nil {
		return fail(err)
	}
	rotate(runDir, t.Step)
	return final, warnings, nil
}

// kept names the newest checkpoint of a run for messages that say it is kept.
func kept(runDir string) string {
	if dir := LatestCheckpoint(runDir); dir != "" {
		return fmt.Sprintf("; the newest checkpoint, %s, is kept", dir)
	}
	return ""
}

// checkpointSize is about the disk space a checkpoint takes: the model and EMA weights (4
// bytes per parameter each), Adam's two moments (8), the files' headers and the state, each
// rounded up to whole 4 KiB blocks.
func checkpointSize(tensors []savedTensor, state int) uint64 {
	block := func(n uint64) uint64 { return (n + 4095) &^ 4095 }
	files := map[string]uint64{}
	for _, st := range tensors {
		files[st.file] += 4*uint64(len(st.data)) + uint64(len(st.name)) + 128
	}
	total := block(uint64(state)) + 4096 // and the directory
	for _, n := range files {
		total += block(n + 8 + 256)
	}
	return total
}

// freeSpace is the space left to unprivileged users on the filesystem holding dir (tests
// replace it).
var freeSpace = diskFree

// makeRoom checks that the disk has need bytes free for a checkpoint of step. If not, it
// removes the checkpoints that rotation would remove after the save, oldest first, when
// that makes enough room; the newest intact checkpoint is never among them.
func makeRoom(runDir string, step int64, need uint64) ([]string, error) {
	root := filepath.Join(runDir, checkpoints)
	free, err := freeSpace(root)
	if err != nil || free >= need {
		return nil, nil // unknown: write, and report a full disk if it comes to that
	}
	dirs, err := stepDirs(runDir)
	if err != nil {
		return nil, err
	}
	var older []ckptDir // intact, older than step, newest first
	for _, d := range dirs {
		if d.step < step && checkStructure(d.path) == nil {
			older = append(older, d)
		}
	}
	var doomed []ckptDir // those rotation would remove once this one is saved
	if len(older) >= keepLast {
		doomed = older[keepLast-1:]
	}
	gain := uint64(0)
	for _, d := range doomed {
		gain += dirSize(d.path)
	}
	if free+gain < need {
		more := ""
		if gain > 0 {
			more = fmt.Sprintf(" (%s more once the older checkpoints that rotation would remove are gone)", bytesize(gain))
		}
		return nil, fmt.Errorf("not enough disk space: a checkpoint of this model takes about %s and the disk holding %s has %s free%s: free some space%s",
			bytesize(need), root, bytesize(free), more, kept(runDir))
	}
	var warnings []string
	for i := len(doomed) - 1; i >= 0 && free < need; i-- {
		if err := removeCheckpoint(doomed[i].path); err != nil {
			return warnings, fmt.Errorf("making room: %w", err)
		}
		warnings = append(warnings, fmt.Sprintf("only %s was free on the disk holding %s: removed %s, which rotation would remove after this save, before writing %s",
			bytesize(free), root, doomed[i].path, stepName(step)))
		if free, err = freeSpace(root); err != nil {
			return warnings, nil
		}
	}
	if free < need {
		return warnings, fmt.Errorf("not enough disk space: a checkpoint of this model takes about %s and the disk holding %s has %s free: free some space%s",
			bytesize(need), root, bytesize(free), kept(runDir))
	}
	return warnings, nil
}

// dirSize is the total size of the files in dir.
func dirSize(dir string) uint64 {
	entries, _ := os.ReadDir(dir)
	n := uint64(0)
	for _, e := range entries {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
			n += uint64(info.Size())
		}
	}
	return n
}

// rotate removes the intact checkpoints older than the two newest intact ones up to the
// one of step just saved. Checkpoints newer than it are not its to judge, and damaged ones
// that hold weights are left for the user; an empty step directory goes.
func rotate(runDir string, step int64) {
	dirs, _ := stepDirs(runDir)
	intact := 0
	for _, d := range dirs {
		switch {
		case d.step > step:
		case d.step == step:
			intact++
		case checkStructure(d.path) == nil:
			if intact >= keepLast {
				removeCheckpoint(d.path)
			}
			intact++
		case intact >= keepLast && !holdsWeights(d.path):
			removeCheckpoint(d.path)
		}
	}
}

// holdsWeights reports whether dir has any of the three weights files.
func holdsWeights(dir string) bool {
	for _, f := range []string{ModelFile, EMAFile, OptimizerFile} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			return true
		}
	}
	return false
}

// removeCheckpoint renames dir to a temporary name, so that readers see it whole or not
// at all, and deletes it.
func removeCheckpoint(dir string) error {
	tmp := filepath.Join(filepath.Dir(dir), fmt.Sprintf(".tmp-removing-%s-%d", filepath.Base(dir), time.Now().UnixNano()))
	if err := os.Rename(dir, tmp); err != nil {
		return err
	}
	return os.RemoveAll(tmp)
}

// removeStale deletes the temporary directories a killed process left.
func removeStale(root string) {
	stale, _ := filepath.Glob(filepath.Join(root, ".tmp-*"))
	for _, d := range stale {
		os.RemoveAll(d)
	}
}

// moveAside renames an existing checkpoint directory out of the way of a new one of the
// same step, and returns the warning that says so.
func moveAside(dir string) (string, error) {
	state := "it looked intact"
	if err := checkStructure(dir); err != nil {
		state = "it was not intact: " + err.Error()
	}
	aside := fmt.Sprintf("%s.replaced-%d", dir, time.Now().Unix())
	if _, err := os.Lstat(aside); err == nil {
		aside = fmt.Sprintf("%s.replaced-%d", dir, time.Now().UnixNano())
	}
	if err := os.Rename(dir, aside); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s already existed and is kept as %s, which is never removed automatically: delete it once you no longer need it (%s)",
		dir, filepath.Base(aside), state), nil
}
