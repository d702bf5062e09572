package compute

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// snapshot is a deep copy of everything a training step may change.
type snapshot struct {
	step         int64
	w, m, v, ema [][]float32
	rng          []byte
}

func takeSnapshot(t *testing.T, tr *Trainer) snapshot {
	t.Helper()
	cp := func(d [][]float32) [][]float32 {
		out := make([][]float32, len(d))
		for i := range d {
			out[i] = append([]float32(nil), d[i]...)
		}
		return out
	}
	rng, err := tr.RNGState()
	if err != nil {
		t.Fatal(err)
	}
	return snapshot{tr.Step, cp(tr.Net.data()), cp(tr.M), cp(tr.V), cp(tr.EMA), rng}
}

// sameBits fails unless a and b hold the same float32 bit patterns.
func sameBits(t *testing.T, what string, a, b [][]float32) {
	t.Helper()
	for i := range a {
		for j := range a[i] {
			if math.Float32bits(a[i][j]) != math.Float32bits(b[i][j]) {
				t.Fatalf("%s: tensor %d[%d] is %g, was %g", what, i, j, a[i][j], b[i][j])
			}
		}
	}
}

func (s snapshot) assertSame(t *testing.T, o snapshot) {
	t.Helper()
	if s.step != o.step {
		t.Fatalf("step %d, was %d", s.step, o.step)
	}
	sameBits(t, "weights", s.w, o.w)
	sameBits(t, "Adam m", s.m, o.m)
	sameBits(t, "Adam v", s.v, o.v)
	sameBits(t, "EMA", s.ema, o.ema)
	if string(s.rng) != string(o.rng) {
		t.Fatal("the dropout stream moved")
	}
}

func allFinite(d [][]float32) bool {
	for _, x := range d {
		if n, _ := countNonFinite(x); n > 0 {
			return false
		}
	}
	return true
}

// newCkptTrainer is a tiny-preset trainer whose values mark its step (see mark).
func newCkptTrainer(t *testing.T) *Trainer {
	t.Helper()
	tr := NewTrainer(tinyNet(t, 0.1), DefaultOptim(), 5)
	t.Cleanup(tr.Close)
	return tr
}

// mark moves tr to step and writes the step into its first weight, EMA value and moments,
// so that a loaded checkpoint shows which step each of its files came from.
func mark(tr *Trainer, step int64) {
	tr.Step = step
	tr.Net.Params[0].Data[0] = float32(step)
	tr.EMA[0][0] = float32(step) + 0.5
	tr.M[0][0] = float32(step) + 0.25
	tr.V[0][0] = float32(step) + 0.75
}

func saveStep(t *testing.T, run string, tr *Trainer, step int64) string {
	t.Helper()
	mark(tr, step)
	dir, warnings, err := SaveCheckpoint(run, tr, json.RawMessage(`{"data":"test"}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) > 0 {
		t.Fatalf("save step %d: unexpected warnings %q", step, warnings)
	}
	return dir
}

func stepDir(run string, step int64) string { return filepath.Join(run, checkpoints, stepName(step)) }

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// dataOffset is where the first tensor's bytes start in a safetensors file.
func dataOffset(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return 8 + int64(binary.LittleEndian.Uint64(b))
}

// damage is one way a file can be broken, and words its message must contain.
type damage struct {
	name  string
	apply func(t *testing.T, path string)
	says  string
}

var damages = []damage{
	{"truncated", func(t *testing.T, p string) {
		info, _ := os.Stat(p)
		if err := os.Truncate(p, info.Size()/3); err != nil {
			t.Fatal(err)
		}
	}, "its header promises (truncated?)"},
	{"empty", func(t *testing.T, p string) {
		if err := os.Truncate(p, 0); err != nil {
			t.Fatal(err)
		}
	}, "too short"},
	{"garbage", func(t *testing.T, p string) {
		info, _ := os.Stat(p)
		junk := bytes.Repeat([]byte("garbage!"), int(info.Size()/8)+1)
		if err := os.WriteFile(p, junk[:info.Size()], 0o644); err != nil {
			t.Fatal(err)
		}
	}, "not a safetensors file?"},
	{"garbled header", func(t *testing.T, p string) {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		f.WriteAt([]byte("{\"x\": [1, 2"), 8)
	}, "header cannot be read"},
	{"appended", func(t *testing.T, p string) {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		f.Write(make([]byte, 100))
	}, "more than its header accounts for"},
	{"Inf inside", func(t *testing.T, p string) {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var inf [4]byte
		binary.LittleEndian.PutUint32(inf[:], math.Float32bits(float32(math.Inf(1))))
		f.WriteAt(inf[:], dataOffset(t, p)+40)
	}, "finite number"},
	{"missing", func(t *testing.T, p string) {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}, "is missing"},
}

// TestDamagedNewestFallsBack damages one file of the newest of two checkpoints in each
// way of damages. LoadLatest must load the older one, exactly as saved, with one warning
// that names the damaged file, says what is wrong in words, and names the checkpoint
// used instead; a run whose every checkpoint is damaged is an error naming them all.
// Planted bugs it catches: no fallback (LoadLatest returning the newest's error: every
// subtest fails) and the library's messages ("metadata incomplete buffer").
func TestDamagedNewestFallsBack(t *testing.T) {
	for _, file := range []string{ModelFile, EMAFile, OptimizerFile, StateFile} {
		for _, d := range damages {
			if file == StateFile && d.name != "truncated" && d.name != "missing" && d.name != "garbage" {
				continue
			}
			t.Run(file+"/"+d.name, func(t *testing.T) {
				run := t.TempDir()
				tr := newCkptTrainer(t)
				saveStep(t, run, tr, 1)
				want := takeSnapshot(t, tr)
				saveStep(t, run, tr, 2)
				bad := filepath.Join(stepDir(run, 2), file)
				d.apply(t, bad)
				l, err := LoadLatest(run)
				if err != nil {
					t.Fatal(err)
				}
				defer l.Trainer.Close()
				if l.Dir != stepDir(run, 1) || len(l.Warnings) != 1 {
					t.Fatalf("loaded %s with warnings %q, want %s and one warning", l.Dir, l.Warnings, stepDir(run, 1))
				}
				w := l.Warnings[0]
				says := d.says
				if file == StateFile {
					says = map[string]string{"truncated": "not valid JSON", "missing": "has no state.json", "garbage": "not valid JSON"}[d.name]
				}
				if !strings.Contains(w, bad) && !(file == StateFile && d.name == "missing" && strings.Contains(w, stepDir(run, 2))) ||
					!strings.Contains(w, says) || !strings.Contains(w, "using the older checkpoint "+stepDir(run, 1)) {
					t.Fatalf("warning %q: want it to name %s, say %q and name the checkpoint used", w, bad, says)
				}
				t.Log(w)
				takeSnapshot(t, l.Trainer).assertSame(t, want)
			})
		}
	}
	t.Run("all damaged", func(t *testing.T) {
		run := t.TempDir()
		tr := newCkptTrainer(t)
		saveStep(t, run, tr, 1)
		saveStep(t, run, tr, 2)
		os.Truncate(filepath.Join(stepDir(run, 1), ModelFile), 100)
		os.Truncate(filepath.Join(stepDir(run, 2), EMAFile), 100)
		_, err := LoadLatest(run)
		if err == nil || !strings.Contains(err.Error(), "no intact checkpoint") ||
			!strings.Contains(err.Error(), filepath.Join(stepDir(run, 1), ModelFile)) || !strings.Contains(err.Error(), filepath.Join(stepDir(run, 2), EMAFile)) {
			t.Fatalf("err %v, want one naming both damaged files", err)
		}
		if _, err := LoadLatest(t.TempDir()); !errors.Is(err, ErrNoCheckpoint) {
			t.Fatalf("empty run: err %v, want ErrNoCheckpoint", err)
		}
	})
}

// TestTruncatedMessage: the message for a truncated file gives both sizes, as "it ends
// after 1.2 MB of the 6.5 MB its header promises (truncated?)".
func TestTruncatedMessage(t *testing.T) {
	run := t.TempDir()
	tr := newCkptTrainer(t)
	dir := saveStep(t, run, tr, 1)
	path := filepath.Join(dir, ModelFile)
	info, _ := os.Stat(path)
	os.Truncate(path, 1_000_000)
	err := LoadWeights(path, tr.Net, tr.Net.data())
	want := fmt.Sprintf("%s is damaged: it ends after 1.0 MB of the %s its header promises (truncated?)", path, bytesize(uint64(info.Size())))
	if err == nil || err.Error() != want {
		t.Fatalf("err %v\nwant %s", err, want)
	}
	var de *DamagedError
	if !errors.As(err, &de) || de.Path != path {
		t.Fatalf("err %T, want a *DamagedError for %s", err, path)
	}
}

// TestSamplingIgnoresOptimizer damages the optimizer's file of the newest checkpoint:
// the sampling loader still loads it (EMA and raw weights, exactly as saved, no warning),
// while the training loader falls back to the older one and says why.
// Planted bug it catches: sampling through the training loader (it read the optimizer's
// file and refused the run, or here fell back to the older checkpoint).
func TestSamplingIgnoresOptimizer(t *testing.T) {
	run := t.TempDir()
	tr := newCkptTrainer(t)
	saveStep(t, run, tr, 1)
	saveStep(t, run, tr, 2)
	want := takeSnapshot(t, tr)
	os.WriteFile(filepath.Join(stepDir(run, 2), OptimizerFile), []byte("not a tensor file"), 0o644)
	for _, ema := range []bool{true, false} {
		l, err := LoadLatestForSampling(run, ema)
		if err != nil {
			t.Fatal(err)
		}
		if l.Dir != stepDir(run, 2) || len(l.Warnings) > 0 || l.Trainer != nil {
			t.Fatalf("ema %v: loaded %s, warnings %q", ema, l.Dir, l.Warnings)
		}
		w := want.w
		if ema {
			w = want.ema
		}
		sameBits(t, fmt.Sprintf("sampling weights (ema %v)", ema), l.Net.data(), w)
	}
	l, err := LoadLatest(run)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Trainer.Close()
	if l.Dir != stepDir(run, 1) || len(l.Warnings) != 1 || !strings.Contains(l.Warnings[0], filepath.Join(stepDir(run, 2), OptimizerFile)) {
		t.Fatalf("training loader: %s, warnings %q", l.Dir, l.Warnings)
	}
	t.Log(l.Warnings[0])
	// The sampling loader does need the file it samples with.
	os.Truncate(filepath.Join(stepDir(run, 2), EMAFile), 10)
	if l, err := LoadLatestForSampling(run, true); err != nil || l.Dir != stepDir(run, 1) || len(l.Warnings) != 1 {
		t.Fatalf("damaged EMA: %s, %q, %v; want a fallback to step 1 with a warning", l.Dir, l.Warnings, err)
	}
}

// TestHugeClaimsNoAllocation reads weights files whose headers claim absurd sizes, and a
// sparse 1 GB file with a valid header: each is a clear error, and loading allocates
// less than 1 MB (the old reader read the whole file into memory: a 40 GB file ended the
// process with "fatal error: runtime: out of memory").
// Planted bug it catches: os.ReadFile of the whole file before checking its size.
func TestHugeClaimsNoAllocation(t *testing.T) {
	dir := t.TempDir()
	net := tinyNet(t, 0)
	p0 := net.Params[0]
	header := func(h string) []byte {
		var b bytes.Buffer
		binary.Write(&b, binary.LittleEndian, uint64(len(h)))
		b.WriteString(h)
		return b.Bytes()
	}
	valid := filepath.Join(dir, "valid.safetensors")
	if err := SaveWeights(valid, net, net.data(), nil); err != nil {
		t.Fatal(err)
	}
	sparse := filepath.Join(dir, "sparse.safetensors")
	b, _ := os.ReadFile(valid)
	os.WriteFile(sparse, b, 0o644)
	os.Truncate(sparse, 1<<30)
	cases := []struct {
		name, path, says string
		content          []byte
	}{
		{"header length 2^62", "len.safetensors", "announce a header of 4.6 EB", binary.LittleEndian.AppendUint64(nil, 1<<62)},
		{"huge tensor", "big.safetensors", "of the 4.0 TB its header promises (truncated?)",
			header(`{"` + p0.Name + `":{"dtype":"F32","shape":[1000000000,1000],"data_offsets":[0,4000000000000]}}`)},
		{"offsets past the shape", "off.safetensors", "header is inconsistent",
			header(`{"` + p0.Name + `":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}}`)},
		{"shape overflowing", "ovf.safetensors", "header is inconsistent",
			header(`{"` + p0.Name + `":{"dtype":"F64","shape":[4294967296,4294967296,16],"data_offsets":[0,0]}}`)},
		{"sparse 1 GB", "sparse.safetensors", "is 1.1 GB long, 1.1 GB more than its header accounts for", nil},
	}
	for _, c := range cases {
		path := filepath.Join(dir, c.path)
		if c.content != nil {
			os.WriteFile(path, c.content, 0o644)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := LoadWeights(path, net, net.data())
		runtime.ReadMemStats(&after)
		if err == nil || !strings.Contains(err.Error(), path+" is damaged") || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: err %v, want %q", c.name, err, c.says)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
			t.Errorf("%s: loading allocated %d bytes", c.name, alloc)
		}
		t.Logf("%s: %v", c.name, err)
	}
}

// TestStateDamaged: a state.json describing an absurd model (a ch_mult of 70 levels made
// Config.Validate divide by zero; a model of 10^15 parameters would be allocated before
// its weights were read) is reported in words, with a fallback, and allocates nothing big.
func TestStateDamaged(t *testing.T) {
	for _, c := range []struct{ name, config, says string }{
		{"70 levels", `{"resolution":16,"in_channels":1,"out_ch":1,"ch":32,"ch_mult":[` + strings.Repeat("1,", 69) + `1],"num_res_blocks":1}`, "at most 12 levels"},
		{"huge model", `{"resolution":16,"in_channels":1,"out_ch":1,"ch":2048,"ch_mult":[32,32],"num_res_blocks":64}`, "shape"},
	} {
		t.Run(c.name, func(t *testing.T) {
			run := t.TempDir()
			tr := newCkptTrainer(t)
			saveStep(t, run, tr, 1)
			saveStep(t, run, tr, 2)
			path := filepath.Join(stepDir(run, 2), StateFile)
			os.WriteFile(path, []byte(`{"step":2,"config":`+c.config+`}`), 0o644)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			l, err := LoadLatestForSampling(run, true)
			runtime.ReadMemStats(&after)
			if err != nil || l.Dir != stepDir(run, 1) || len(l.Warnings) != 1 || !strings.Contains(l.Warnings[0], c.says) {
				t.Fatalf("loaded %s, warnings %q, err %v; want step 1 and a warning saying %q", l.Dir, l.Warnings, err, c.says)
			}
			t.Log(l.Warnings[0])
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
				t.Errorf("loading allocated %d bytes", alloc)
			}
		})
	}
}

// TestIncompleteNewestKeepsWeights removes state.json from the newest checkpoint, as a
// killed or damaged save may leave it. Loading falls back with a warning that names it;
// training on from the older one and saving the same step again moves the old directory
// aside, whole, instead of deleting its weights, and says so.
// Planted bug it catches: SaveCheckpoint's os.RemoveAll of an existing directory of the
// step (its weights were deleted), and listCheckpoints skipping it silently.
func TestIncompleteNewestKeepsWeights(t *testing.T) {
	run := t.TempDir()
	tr := newCkptTrainer(t)
	saveStep(t, run, tr, 1)
	saveStep(t, run, tr, 2)
	old := stepDir(run, 2)
	weights, _ := os.ReadFile(filepath.Join(old, ModelFile))
	os.Remove(filepath.Join(old, StateFile))
	l, err := LoadLatest(run)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Trainer.Close()
	if l.Dir != stepDir(run, 1) || len(l.Warnings) != 1 || !strings.Contains(l.Warnings[0], old+" has no state.json") {
		t.Fatalf("loaded %s, warnings %q", l.Dir, l.Warnings)
	}
	mark(l.Trainer, 2)
	dir, warnings, err := SaveCheckpoint(run, l.Trainer, nil)
	if err != nil {
		t.Fatal(err)
	}
	aside, _ := filepath.Glob(old + ".replaced-*")
	if dir != old || len(aside) != 1 || len(warnings) != 1 || !strings.Contains(warnings[0], filepath.Base(aside[0])) || !strings.Contains(warnings[0], "has no state.json") {
		t.Fatalf("saved %s, moved aside %v, warnings %q", dir, aside, warnings)
	}
	t.Log(warnings[0])
	if got, err := os.ReadFile(filepath.Join(aside[0], ModelFile)); err != nil || !bytes.Equal(got, weights) {
		t.Fatalf("the old weights were not kept whole: %v", err)
	}
	// Rotation leaves the moved directory alone.
	saveStep(t, run, l.Trainer, 3)
	saveStep(t, run, l.Trainer, 4)
	if !exists(aside[0]) || exists(stepDir(run, 1)) || exists(stepDir(run, 2)) || !exists(stepDir(run, 3)) {
		t.Fatal("rotation removed the wrong directories")
	}
}

// TestRotationKeepsIntact: with a damaged checkpoint between intact ones, rotation keeps
// two intact checkpoints and never deletes the damaged one's weights; a stale temporary
// directory of a killed process is removed, and an empty step directory too.
// Planted bug it catches: rotation by count alone (keep the last two directories with a
// state.json), which deleted step 2 and kept the damaged step 3 and step 4: one intact.
func TestRotationKeepsIntact(t *testing.T) {
	run := t.TempDir()
	tr := newCkptTrainer(t)
	saveStep(t, run, tr, 1)
	saveStep(t, run, tr, 2)
	saveStep(t, run, tr, 3)
	os.Truncate(filepath.Join(stepDir(run, 3), ModelFile), 1000)
	stale := filepath.Join(run, checkpoints, ".tmp-123")
	os.MkdirAll(stale, 0o755)
	os.MkdirAll(stepDir(run, 0), 0o755) // empty
	saveStep(t, run, tr, 4)
	for step, want := range map[int64]bool{0: false, 1: false, 2: true, 3: true, 4: true} {
		if exists(stepDir(run, step)) != want {
			t.Errorf("step %d: exists %v, want %v", step, !want, want)
		}
	}
	if exists(stale) {
		t.Error("the stale temporary directory is still there")
	}
	saveStep(t, run, tr, 5)
	if exists(stepDir(run, 2)) || !exists(stepDir(run, 3)) || !exists(stepDir(run, 4)) {
		t.Error("after step 5: want step 2 removed, the damaged step 3 and step 4 kept")
	}
}

// fakeDisk makes freeSpace report a disk of size bytes holding only the run's checkpoints.
func fakeDisk(t *testing.T, run string, size uint64) {
	t.Helper()
	old := freeSpace
	t.Cleanup(func() { freeSpace = old })
	freeSpace = func(string) (uint64, error) {
		used := uint64(0)
		filepath.Walk(filepath.Join(run, checkpoints), func(_ string, info os.FileInfo, err error) error {
			if err == nil && info.Mode().IsRegular() {
				used += uint64(info.Size())
			}
			return nil
		})
		if used > size {
			return 0, nil
		}
		return size - used, nil
	}
}

// TestDiskSpace runs saves on a disk (freeSpace faked) with room for two checkpoints and
// a half: the third save removes the oldest checkpoint first, since rotation would remove
// it anyway; on a disk with room for one and a half, the second save fails, saying how
// much a checkpoint needs and how much is free where, and deletes nothing.
// Planted bug it catches: saving without looking at the free space (the old checkpoint
// was deleted only after the new one was written, so a full disk never saved again).
func TestDiskSpace(t *testing.T) {
	run := t.TempDir()
	tr := newCkptTrainer(t)
	one := dirSize(saveStep(t, run, tr, 1))
	restore := freeSpace
	fakeDisk(t, run, one*5/2)
	saveStep(t, run, tr, 2)
	mark(tr, 3)
	dir, warnings, err := SaveCheckpoint(run, tr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "removed "+stepDir(run, 1)) {
		t.Fatalf("warnings %q, want one about removing step 1", warnings)
	}
	t.Log(warnings[0])
	if !exists(dir) || !exists(stepDir(run, 2)) || exists(stepDir(run, 1)) {
		t.Fatal("want steps 2 and 3")
	}

	freeSpace = restore
	run = t.TempDir()
	saveStep(t, run, tr, 1)
	fakeDisk(t, run, one*3/2)
	mark(tr, 2)
	_, _, err = SaveCheckpoint(run, tr, nil)
	if err == nil || !strings.Contains(err.Error(), "not enough disk space: a checkpoint of this model takes about 11.3 MB") ||
		!strings.Contains(err.Error(), filepath.Join(run, checkpoints)+" has 5.6 MB free") || !strings.HasSuffix(err.Error(), "free some space; the newest checkpoint, "+stepDir(run, 1)+", is kept") {
		t.Fatalf("err %v", err)
	}
	t.Log(err)
	entries, _ := os.ReadDir(filepath.Join(run, checkpoints))
	if len(entries) != 1 {
		t.Fatalf("left %d entries, want only step 1", len(entries))
	}
}

// TestReaderSurvivesRotation: a reader that chose the newest checkpoint and is overtaken
// by two saves (rotation removes the checkpoint while it reads) loads the new newest,
// without an error or warning.
// Planted bug it catches: treating the vanished checkpoint as damaged (a warning and the
// older one, or an error) instead of listing again; also plain os.RemoveAll rotation, which
// let a reader find state.json gone from a directory that still existed.
func TestReaderSurvivesRotation(t *testing.T) {
	run := t.TempDir()
	tr := newCkptTrainer(t)
	saveStep(t, run, tr, 1)
	saveStep(t, run, tr, 2)
	overtaken := false
	testHookLoad = func(dir string) {
		if !overtaken {
			overtaken = true
			saveStep(t, run, tr, 3)
			saveStep(t, run, tr, 4)
		}
	}
	defer func() { testHookLoad = nil }()
	l, err := LoadLatest(run)
	if err != nil || l.Dir != stepDir(run, 4) || len(l.Warnings) > 0 || !overtaken {
		t.Fatalf("loaded %s, warnings %q, err %v; want step 4", l.Dir, l.Warnings, err)
	}
	defer l.Trainer.Close()
	takeSnapshot(t, l.Trainer).assertSame(t, takeSnapshot(t, tr))
}

// TestSaveLoadRace saves checkpoints in a loop on one goroutine while another loads the
// newest (for training, for sampling, its state): no load may fail or warn, and every
// load must see the files of one checkpoint (the step marks agree). Every fourth reader
// dawdles after choosing its checkpoint until two more saves (and their rotations) have
// overtaken it. Run it with -race. Planted bug it catches: see TestReaderSurvivesRotation.
func TestSaveLoadRace(t *testing.T) {
	run := t.TempDir()
	tr := newCkptTrainer(t)
	saveStep(t, run, tr, 1)
	saves := 40
	if testing.Short() {
		saves = 10
	}
	var saved atomic.Int64 // by the writer
	var wg sync.WaitGroup
	done := make(chan struct{})
	opened := 0 // checkpoint directories the reader opened: one a load, more when one vanished
	testHookLoad = func(string) {
		if opened++; opened%4 == 0 {
			for s := saved.Load(); saved.Load() < s+2; {
				select {
				case <-done:
					return
				case <-time.After(time.Millisecond):
				}
			}
		}
	}
	defer func() { testHookLoad = nil }()
	var saveErr error
	wg.Go(func() {
		defer close(done)
		for step := int64(2); step <= int64(saves); step++ {
			mark(tr, step)
			if _, _, err := SaveCheckpoint(run, tr, nil); err != nil {
				saveErr = err
				return
			}
			saved.Store(step)
		}
	})
	loads := 0
	for running := true; running; loads++ {
		select {
		case <-done:
			running = false
		default:
		}
		switch loads % 3 {
		case 0:
			l, err := LoadLatest(run)
			if err != nil || len(l.Warnings) > 0 {
				t.Fatalf("load %d: %v %q", loads, err, l.Warnings)
			}
			s := float32(l.State.Step)
			if l.Net.Params[0].Data[0] != s || l.Trainer.EMA[0][0] != s+0.5 || l.Trainer.M[0][0] != s+0.25 || l.Trainer.V[0][0] != s+0.75 {
				t.Fatalf("load %d: files of different checkpoints under step %d", loads, l.State.Step)
			}
			l.Trainer.Close()
		case 1:
			l, err := LoadLatestForSampling(run, true)
			if err != nil || len(l.Warnings) > 0 {
				t.Fatalf("load %d: %v %q", loads, err, l.Warnings)
			}
			if l.Net.Params[0].Data[0] != float32(l.State.Step)+0.5 {
				t.Fatalf("load %d: EMA of another checkpoint under step %d", loads, l.State.Step)
			}
		case 2:
			if _, _, err := LatestState(run); err != nil {
				t.Fatalf("load %d: %v", loads, err)
			}
		}
	}
	wg.Wait()
	if saveErr != nil {
		t.Fatal(saveErr)
	}
	t.Logf("%d loads during %d saves; %d checkpoints vanished while being read", loads, saves-1, opened-loads)
}

// TestSaveRefusesNonFinite: a trainer whose EMA holds a NaN (as a trainer did before
// TrainStep checked its updates) is not saved; the error names the file and the tensor,
// nothing is left behind, and the newest checkpoint is still the finite one.
// Planted bug it catches: SaveCheckpoint writing its tensors unchecked.
func TestSaveRefusesNonFinite(t *testing.T) {
	run := t.TempDir()
	tr := NewTrainer(tinyNet(t, 0), DefaultOptim(), 0)
	defer tr.Close()
	first, _, err := SaveCheckpoint(run, tr, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr.Step = 5
	bad := tr.Net.Params[7].Name
	tr.EMA[7][3] = float32(math.NaN())
	_, _, err = SaveCheckpoint(run, tr, nil)
	if err == nil || !strings.Contains(err.Error(), EMAFile) || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "not a finite number") {
		t.Fatalf("err %v, want a refusal naming %s and %s", err, EMAFile, bad)
	}
	t.Log(err)
	entries, _ := os.ReadDir(run + "/" + checkpoints)
	if len(entries) != 1 || LatestCheckpoint(run) != first {
		t.Fatalf("checkpoints after the refusal: %v, newest %s", entries, LatestCheckpoint(run))
	}
}
