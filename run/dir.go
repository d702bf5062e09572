package run

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofrs/flock"

	"github.com/ddpm-studio/ddpm-studio/compute"
	"github.com/ddpm-studio/ddpm-studio/internal/atomicfile"
	"github.com/ddpm-studio/ddpm-studio/internal/limitread"
)

// Files of a run directory besides compute's checkpoints/.
const (
	MetricsFile = "metrics.jsonl" // one Metric per logged step
	SamplesDir  = "samples"       // the gallery: step-NNNNNNNN.png
	lockFile    = ".lock"         // held by the process training the run; holds its PID
)

// Metric is one line of metrics.jsonl.
type Metric struct {
	Step         int64   `json:"step"`
	Loss         float64 `json:"loss"`
	LR           float64 `json:"lr"`
	GradNorm     float64 `json:"grad_norm"`
	ImagesPerSec float64 `json:"images_per_sec"`
	Elapsed      float64 `json:"elapsed_s"`
}

// Lock is the one writer's hold on a run directory.
type Lock struct{ f *flock.Flock }

// ErrBusy is returned by LockDir when another process trains the run.
var ErrBusy = errors.New("run is busy")

// LockDir takes the advisory lock (flock) that makes one process at a time the writer
// of the run in dir, and writes this process's ID into it. If another process holds
// it, the error says which ("run X is being trained by process N") and wraps ErrBusy.
// The lock goes with the process, however it ends.
func LockDir(dir string) (*Lock, error) {
	path := filepath.Join(dir, lockFile)
	f := flock.New(path)
	ok, err := f.TryLock()
	if err != nil {
		return nil, fmt.Errorf("lock run %s: %w", dir, err)
	}
	if !ok {
		who := "another process"
		if b, err := limitread.File(path, 64); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				who = fmt.Sprintf("process %d", pid)
			}
		}
		return nil, busyError(fmt.Sprintf("run %s is being trained by %s; wait for it to finish or stop it first", dir, who))
	}
	// The lock is on the file's inode; rewriting its content keeps it.
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		f.Unlock()
		return nil, fmt.Errorf("lock run %s: %w", dir, err)
	}
	return &Lock{f: f}, nil
}

// busyError says who holds a run; it is ErrBusy to errors.Is.
type busyError string

func (e busyError) Error() string        { return string(e) }
func (e busyError) Is(target error) bool { return target == ErrBusy }

// Unlock releases the run.
func (l *Lock) Unlock() {
	if l != nil && l.f != nil {
		l.f.Unlock()
	}
}

// scanMetrics calls fn with every well-formed line of the run's metrics.jsonl, in order,
// reading it as a stream (it can be long: a line per step).
func scanMetrics(dir string, fn func(m Metric, line []byte)) error {
	f, err := os.Open(filepath.Join(dir, MetricsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m Metric
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			fn(m, sc.Bytes())
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("metrics %s: %w", f.Name(), err)
	}
	return nil
}

// trimMetrics drops the lines logged after step (work lost with a killed process) and
// any damaged line, so a resumed run's metrics.jsonl has each step once.
func trimMetrics(dir string, step int64) error {
	var keep bytes.Buffer
	dropped := false
	lines := 0
	err := scanMetrics(dir, func(m Metric, line []byte) {
		lines++
		if m.Step > step {
			dropped = true
			return
		}
		keep.Write(line)
		keep.WriteByte('\n')
	})
	if err != nil {
		return err
	}
	if !dropped {
		if info, err := os.Stat(filepath.Join(dir, MetricsFile)); err != nil || int64(keep.Len()) == info.Size() {
			return nil
		}
	}
	return atomicfile.WriteFile(filepath.Join(dir, MetricsFile), func(w io.Writer) error {
		_, err := w.Write(keep.Bytes())
		return err
	})
}

// LossPoint is the loss logged at a step.
type LossPoint struct {
	Step int64
	Loss float64
}

// LossHistory is the (step, loss) pairs the run in dir logged up to step.
func LossHistory(dir string, step int64) ([]LossPoint, error) {
	var out []LossPoint
	err := scanMetrics(dir, func(m Metric, _ []byte) {
		if m.Step <= step {
			out = append(out, LossPoint{Step: m.Step, Loss: m.Loss})
		}
	})
	return out, err
}

// GalleryItem is one sample grid saved during training.
type GalleryItem struct {
	Path string
	Step int64
	Time time.Time
}

// Gallery lists the sample grids of the run in dir (samples/step-N.png), newest first.
func Gallery(dir string) ([]GalleryItem, error) {
	paths, err := filepath.Glob(filepath.Join(dir, SamplesDir, "step-*.png"))
	if err != nil {
		return nil, err
	}
	var items []GalleryItem
	for _, p := range paths {
		var step int64
		if _, err := fmt.Sscanf(filepath.Base(p), "step-%d.png", &step); err != nil {
			continue
		}
		it := GalleryItem{Path: p, Step: step}
		if info, err := os.Stat(p); err == nil {
			it.Time = info.ModTime()
		}
		items = append(items, it)
	}
	slices.SortFunc(items, func(a, b GalleryItem) int { return int(b.Step - a.Step) })
	return items, nil
}

// galleryPath is where the grid of step goes.
func galleryPath(dir string, step int64) string {
	return filepath.Join(dir, SamplesDir, fmt.Sprintf("step-%08d.png", step))
}

// Info describes a run from its newest checkpoint's state (not its weights).
type Info struct {
	Dir     string
	Name    string
	Step    int64
	Config  compute.Config
	Optim   compute.OptimConfig
	Meta    Meta
	Updated time.Time
}

// Describe reads the run in dir (the state of its newest intact checkpoint); ok is false
// if it has none.
func Describe(dir string) (Info, bool) {
	ckpt, st, err := compute.LatestState(dir)
	if err != nil {
		return Info{}, false
	}
	m, err := readMeta(st, ckpt)
	if err != nil {
		return Info{}, false
	}
	in := Info{Dir: dir, Name: filepath.Base(dir), Step: st.Step, Config: st.Config, Optim: st.Optim, Meta: m}
	if fi, err := os.Stat(ckpt); err == nil {
		in.Updated = fi.ModTime()
	}
	return in, true
}

// List describes the runs (folders with a checkpoint) in runsDir, newest first.
func List(runsDir string) ([]Info, error) {
	entries, err := os.ReadDir(runsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("runs folder %s: %w", runsDir, err)
	}
	var runs []Info
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if in, ok := Describe(filepath.Join(runsDir, e.Name())); ok {
			runs = append(runs, in)
		}
	}
	slices.SortFunc(runs, func(a, b Info) int { return b.Updated.Compare(a.Updated) })
	return runs, nil
}
