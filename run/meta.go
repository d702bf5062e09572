package run

import (
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/ddpm-studio/ddpm-studio/compute"
	"github.com/ddpm-studio/ddpm-studio/diffusion"
)

// Meta is the run's own part of a checkpoint (compute.State.Extra): what the model was
// trained on, with which schedule, and the state of the stream that draws batches,
// timesteps and noise. Its JSON keys are the checkpoint format; do not rename them.
type Meta struct {
	Data      string   `json:"data"`                 // dataset: a folder (absolute) or "mnist"
	DataFiles []string `json:"data_files,omitempty"` // image files trained on, when not a folder
	Preset    string   `json:"preset,omitempty"`     // the model preset the run started from
	Schedule  string   `json:"schedule"`             // "linear" or "cosine"
	T         int      `json:"T"`                    // diffusion steps
	Variance  string   `json:"variance"`             // "fixedlarge" or "fixedsmall", for sampling and the bound
	Batch     int      `json:"batch"`                // images per step
	Flip      bool     `json:"hflip"`                // random horizontal flips
	Seed      uint64   `json:"seed"`                 // seed the run started from
	DataRNG   []byte   `json:"data_rng"`             // PCG state of the batch/timestep/noise stream
	Steps     int64    `json:"steps"`                // the step count asked for
}

// marshalMeta is m as a checkpoint's extra state.
func marshalMeta(m Meta) (json.RawMessage, error) { return json.Marshal(m) }

// readMeta decodes a checkpoint's meta, filling the paper's schedule for runs that
// stored none.
func readMeta(st compute.State, ckpt string) (Meta, error) {
	var m Meta
	if len(st.Extra) > 0 && string(st.Extra) != "null" {
		if err := json.Unmarshal(st.Extra, &m); err != nil {
			return m, fmt.Errorf("checkpoint %s: run state: %w", ckpt, err)
		}
	}
	if m.Schedule == "" {
		m.Schedule, m.T = diffusion.ScheduleLinear, diffusion.DefaultT
	}
	if m.Variance == "" {
		m.Variance = diffusion.VarianceFixedLarge
	}
	if m.Preset == "" {
		m.Preset = PresetOf(st.Config)
	}
	return m, nil
}

// PresetOf names the preset a configuration was made from (image size and channels
// follow the data, so they are not compared), or "" if none matches.
func PresetOf(c compute.Config) string {
	for _, name := range compute.PresetNames() {
		p, err := compute.PresetConfig(name)
		if err != nil {
			continue
		}
		p.Resolution, p.InChannels, p.OutCh = c.Resolution, c.InChannels, c.OutCh
		if reflect.DeepEqual(p, c) {
			return name
		}
	}
	return ""
}
