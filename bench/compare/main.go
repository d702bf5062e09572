// Command compare is `make bench`: it times ddpm-studio and the PyTorch reference
// (bench/torchref/bench.py, Debian's python3-torch) on the same U-Net, the same
// shapes and the same thread count, alternating the two in one run, and prints
// each figure with the ratio ours/PyTorch.
//
//	go run ./bench/compare [-bin bin/ddpm-studio] [-threads 2] [-rounds 1] [-presets mnist:64,cifar32:64]
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// result is the JSON line both sides print.
type result struct {
	Impl              string  `json:"impl"`
	TrainStepS        float64 `json:"train_step_s"`
	TrainImagesPerS   float64 `json:"train_images_per_s"`
	TrainGFLOPS       float64 `json:"train_gflops"`
	ForwardS          float64 `json:"forward_s"`
	ForwardImagesPerS float64 `json:"forward_images_per_s"`
	ForwardGFLOPS     float64 `json:"forward_gflops"`
	PeakRSSTrainMB    float64 `json:"peak_rss_train_mb"`
	BLAS              blas    `json:"blas"`
}

// blas is the BLAS a side runs: ddpm-studio's object (compute/ops.BLASInfo),
// or bench.py's line.
type blas struct {
	Line     string // bench.py
	Library  string `json:"library"`
	Core     string `json:"core"`
	ChosenBy string `json:"chosen_by"`
	Fallback string `json:"fallback"`
	CPU      string `json:"cpu"`
}

// UnmarshalJSON takes either form.
func (b *blas) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && data[0] == '"' {
		return json.Unmarshal(data, &b.Line)
	}
	type plain blas
	return json.Unmarshal(data, (*plain)(b))
}

// String is one line.
func (b blas) String() string {
	switch {
	case b.Line != "":
		return b.Line
	case b.ChosenBy == "ddpm-studio":
		return fmt.Sprintf("%s, core %s (set by ddpm-studio; OpenBLAS picked %s), CPU %s", b.Library, b.Core, b.Fallback, b.CPU)
	case b.Core != "":
		return fmt.Sprintf("%s, core %s (chosen by %s), CPU %s", b.Library, b.Core, b.ChosenBy, b.CPU)
	}
	return b.Library + ", CPU " + b.CPU
}

func main() {
	bin := flag.String("bin", "bin/ddpm-studio", "ddpm-studio binary")
	python := flag.String("python", "/usr/bin/python3", "Python with torch (Debian's python3-torch)")
	threads := flag.Int("threads", 2, "threads for both sides (GOMAXPROCS, torch.set_num_threads)")
	rounds := flag.Int("rounds", 1, "alternating rounds; each figure is the median over rounds")
	steps := flag.Int("steps", 5, "timed steps per measurement (median), after 2 warm-up steps")
	presets := flag.String("presets", "mnist:64,cifar32:64", "preset:batch pairs")
	flag.Parse()

	torchOK := exec.Command(*python, "-c", "import torch").Run() == nil
	if !torchOK {
		fmt.Fprintf(os.Stderr, "PyTorch reference skipped: %s cannot import torch (apt-get install python3-torch)\n", *python)
	}
	fmt.Printf("threads %d for both sides; medians of %d steps after 2 warm-up steps, %d round(s), alternating\n", *threads, *steps, *rounds)
	if v := os.Getenv("OPENBLAS_CORETYPE"); v != "" {
		fmt.Printf("OPENBLAS_CORETYPE=%s (kept as the environment sets it)\n", v)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "preset\tbatch\tfigure\tours\tpytorch\tours/pytorch\t")
	firstPreset, _, _ := strings.Cut(*presets, ":")
	for _, pb := range strings.Split(*presets, ",") {
		preset, batch, _ := strings.Cut(pb, ":")
		var ours, theirs []result
		for range *rounds {
			r, err := run(exec.Command(*bin, "bench", "--preset", preset, "--batch", batch, "--steps", strconv.Itoa(*steps), "--json"),
				"GOMAXPROCS="+strconv.Itoa(*threads))
			if err != nil {
				fmt.Fprintln(os.Stderr, "ddpm-studio bench:", err)
				os.Exit(1)
			}
			ours = append(ours, r)
			if len(ours) == 1 && preset == firstPreset {
				fmt.Printf("BLAS, ddpm-studio: %s\n", r.BLAS)
			}
			if torchOK {
				r, err := run(exec.Command(*python, "bench/torchref/bench.py", "--preset", preset, "--batch", batch,
					"--threads", strconv.Itoa(*threads), "--steps", strconv.Itoa(*steps)), "OMP_NUM_THREADS="+strconv.Itoa(*threads))
				if err != nil {
					fmt.Fprintln(os.Stderr, "bench.py:", err)
					os.Exit(1)
				}
				theirs = append(theirs, r)
				if len(theirs) == 1 && preset == firstPreset {
					fmt.Printf("BLAS, PyTorch: %s\n", r.BLAS)
				}
			}
		}
		o := medianResult(ours)
		t := medianResult(theirs)
		if len(theirs) > 0 { // same FLOPs for the same architecture
			t.TrainGFLOPS = o.TrainGFLOPS * o.TrainStepS / t.TrainStepS
			t.ForwardGFLOPS = o.ForwardGFLOPS * o.ForwardS / t.ForwardS
		}
		for _, f := range []struct {
			name   string
			o, t   float64
			format string
		}{
			{"training step (s)", o.TrainStepS, t.TrainStepS, "%.3f"},
			{"training images/s", o.TrainImagesPerS, t.TrainImagesPerS, "%.1f"},
			{"training GFLOP/s", o.TrainGFLOPS, t.TrainGFLOPS, "%.1f"},
			{"forward (s)", o.ForwardS, t.ForwardS, "%.3f"},
			{"forward images/s", o.ForwardImagesPerS, t.ForwardImagesPerS, "%.1f"},
			{"forward GFLOP/s", o.ForwardGFLOPS, t.ForwardGFLOPS, "%.1f"},
			{"peak memory, training (MB)", o.PeakRSSTrainMB, t.PeakRSSTrainMB, "%.0f"},
		} {
			ref, ratio := "-", "-"
			if f.t > 0 {
				ref, ratio = fmt.Sprintf(f.format, f.t), fmt.Sprintf("%.2f", f.o/f.t)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t"+f.format+"\t%s\t%s\t\n", preset, batch, f.name, f.o, ref, ratio)
		}
	}
	tw.Flush()
}

// run executes cmd with extra environment and decodes the JSON object on its last output line.
func run(cmd *exec.Cmd, env ...string) (result, error) {
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("%v: %w\n%s", cmd.Args, err, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var r result
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		return r, fmt.Errorf("%v: last line %q: %w", cmd.Args, lines[len(lines)-1], err)
	}
	return r, nil
}

// medianResult takes the median of each figure over rounds.
func medianResult(rs []result) result {
	if len(rs) == 0 {
		return result{}
	}
	med := func(get func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = get(r)
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return result{
		Impl:              rs[0].Impl,
		BLAS:              rs[0].BLAS,
		TrainStepS:        med(func(r result) float64 { return r.TrainStepS }),
		TrainImagesPerS:   med(func(r result) float64 { return r.TrainImagesPerS }),
		TrainGFLOPS:       med(func(r result) float64 { return r.TrainGFLOPS }),
		ForwardS:          med(func(r result) float64 { return r.ForwardS }),
		ForwardImagesPerS: med(func(r result) float64 { return r.ForwardImagesPerS }),
		ForwardGFLOPS:     med(func(r result) float64 { return r.ForwardGFLOPS }),
		PeakRSSTrainMB:    med(func(r result) float64 { return r.PeakRSSTrainMB }),
	}
}
