package weights

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/ddpm-studio/ddpm-studio/diffusion"
)

// Schedule is the noise schedule a model was trained with, as far as the file says.
type Schedule struct {
	Kind      string  // diffusion.ScheduleLinear or diffusion.ScheduleCosine; another diffusers beta_schedule as named there
	BetaStart float64 // β of the first step (linear)
	BetaEnd   float64 // β of the last step (linear)
	T         int     // diffusion steps
	Variance  string  // diffusion.VarianceFixedLarge or VarianceFixedSmall
	Clip      bool    // x̂0 clipped to [−1, 1] while sampling
	// Known is false when the file holds no schedule (a PyTorch checkpoint):
	// the fields are then the paper's for a model of that size.
	Known bool
	// Prediction is what the network predicts: "epsilon" (DDPM), or another
	// diffusers prediction_type that DDPM Studio's samplers do not use.
	Prediction string
}

// PaperSchedule is the schedule of the paper's models: β linear from 1e-4 to
// 0.02 over T = 1000, σ² = β ("fixedlarge") for CIFAR-10 and σ² = β̃
// ("fixedsmall") for the 256×256 ones (LSUN, CelebA-HQ).
func PaperSchedule(resolution int) Schedule {
	v := diffusion.VarianceFixedLarge
	if resolution >= 256 {
		v = diffusion.VarianceFixedSmall
	}
	return Schedule{Kind: diffusion.ScheduleLinear, BetaStart: 1e-4, BetaEnd: 0.02, T: diffusion.DefaultT,
		Variance: v, Clip: true, Prediction: "epsilon"}
}

// ScheduleOf describes the schedule diffusion.NewSchedule(kind, T) builds,
// sampled with the given variance (how a run stores its schedule).
func ScheduleOf(kind string, T int, variance string) (Schedule, error) {
	s, err := diffusion.NewSchedule(kind, T)
	if err != nil {
		return Schedule{}, err
	}
	if _, _, err := s.ModelVariance(variance); err != nil {
		return Schedule{}, err
	}
	out := Schedule{Kind: kind, T: T, Variance: variance, Clip: true, Known: true, Prediction: "epsilon"}
	if kind == diffusion.ScheduleLinear {
		out.BetaStart, out.BetaEnd = s.Betas[0], s.Betas[T-1]
	}
	return out, nil
}

// Run returns the schedule as a run stores it (kind, T, variance), or says why
// DDPM Studio's samplers would not reproduce it.
func (s Schedule) Run() (kind string, T int, variance string, err error) {
	if s.Prediction != "" && s.Prediction != "epsilon" {
		return "", 0, "", fmt.Errorf("the model predicts %q; DDPM Studio samples with ε-prediction", s.Prediction)
	}
	if !s.Clip {
		return "", 0, "", fmt.Errorf("the schedule does not clip x̂0; DDPM Studio's samplers clip it to [−1, 1]")
	}
	ours, err := ScheduleOf(s.Kind, s.T, s.Variance)
	if err != nil {
		return "", 0, "", fmt.Errorf("schedule %s: %w", s, err)
	}
	if s.Kind == diffusion.ScheduleLinear && (!nearlyEqual(s.BetaStart, ours.BetaStart) || !nearlyEqual(s.BetaEnd, ours.BetaEnd)) {
		return "", 0, "", fmt.Errorf("schedule %s: DDPM Studio's linear schedule of %d steps runs from β %g to %g",
			s, s.T, ours.BetaStart, ours.BetaEnd)
	}
	return s.Kind, s.T, s.Variance, nil
}

func nearlyEqual(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b)) }

// String is a short description, e.g. "linear β 0.0001…0.02, T 1000, fixedlarge".
func (s Schedule) String() string {
	str := s.Kind
	if s.Kind == diffusion.ScheduleLinear {
		str += fmt.Sprintf(" β %g…%g", s.BetaStart, s.BetaEnd)
	}
	str += fmt.Sprintf(", T %d, %s", s.T, s.Variance)
	if !s.Clip {
		str += ", no clipping"
	}
	if s.Prediction != "" && s.Prediction != "epsilon" {
		str += ", predicts " + s.Prediction
	}
	return str
}

// schedulerConfig is the part of a diffusers DDPMScheduler scheduler_config.json DDPM Studio reads.
type schedulerConfig struct {
	ClassName     string          `json:"_class_name"`
	T             *int            `json:"num_train_timesteps"`
	BetaStart     *float64        `json:"beta_start"`
	BetaEnd       *float64        `json:"beta_end"`
	BetaSchedule  *string         `json:"beta_schedule"`
	TrainedBetas  json.RawMessage `json:"trained_betas"`
	VarianceType  *string         `json:"variance_type"`
	ClipSample    *bool           `json:"clip_sample"`
	ClipRange     *float64        `json:"clip_sample_range"`
	Prediction    *string         `json:"prediction_type"`
	Thresholding  *bool           `json:"thresholding"`
	RescaleZeroSN *bool           `json:"rescale_betas_zero_snr"`
}

// scheduleFromDiffusers reads a scheduler_config.json (defaults: DDPMScheduler.__init__'s).
// Settings DDPM Studio cannot sample with are kept and reported by Run; the warnings say so.
func scheduleFromDiffusers(b []byte) (Schedule, []string, error) {
	var c schedulerConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return Schedule{}, nil, fmt.Errorf("scheduler_config.json: %w", err)
	}
	var warn []string
	s := Schedule{Kind: diffusion.ScheduleLinear, BetaStart: 1e-4, BetaEnd: 0.02, T: 1000,
		Variance: diffusion.VarianceFixedSmall, Clip: true, Known: true, Prediction: "epsilon"}
	if c.T != nil {
		s.T = *c.T
	}
	if c.BetaStart != nil {
		s.BetaStart = *c.BetaStart
	}
	if c.BetaEnd != nil {
		s.BetaEnd = *c.BetaEnd
	}
	if c.BetaSchedule != nil {
		switch *c.BetaSchedule {
		case "linear":
		case "squaredcos_cap_v2":
			s.Kind, s.BetaStart, s.BetaEnd = diffusion.ScheduleCosine, 0, 0
		default:
			s.Kind = *c.BetaSchedule
		}
	}
	if t := string(c.TrainedBetas); t != "" && t != "null" {
		s.Kind = "trained_betas"
	}
	if c.VarianceType != nil {
		switch *c.VarianceType {
		case "fixed_small", "fixed_small_log":
			s.Variance = diffusion.VarianceFixedSmall
		case "fixed_large", "fixed_large_log":
			s.Variance = diffusion.VarianceFixedLarge
		default:
			s.Variance = *c.VarianceType
		}
	}
	if c.ClipSample != nil {
		s.Clip = *c.ClipSample
	}
	if c.ClipRange != nil && *c.ClipRange != 1 && s.Clip {
		warn = append(warn, fmt.Sprintf("scheduler clips x̂0 to ±%g; DDPM Studio clips to ±1", *c.ClipRange))
	}
	if c.Prediction != nil {
		s.Prediction = *c.Prediction
	}
	if c.Thresholding != nil && *c.Thresholding {
		warn = append(warn, "scheduler uses dynamic thresholding; DDPM Studio clips x̂0 to [−1, 1] instead")
	}
	if c.RescaleZeroSN != nil && *c.RescaleZeroSN {
		warn = append(warn, "scheduler rescales β to zero terminal SNR; DDPM Studio does not")
	}
	if s.T < 2 || s.T > 1_000_000 {
		return Schedule{}, nil, fmt.Errorf("scheduler_config.json: num_train_timesteps %d", s.T)
	}
	if _, _, _, err := s.Run(); err != nil {
		warn = append(warn, "samples may differ: "+err.Error())
	}
	return s, warn, nil
}

// schedulerJSON is the DDPMScheduler scheduler_config.json of s.
func schedulerJSON(s Schedule) (map[string]any, error) {
	c := map[string]any{
		"_class_name":                "DDPMScheduler",
		"_diffusers_version":         diffusersVersion,
		"beta_end":                   0.02,
		"beta_schedule":              "linear",
		"beta_start":                 0.0001,
		"clip_sample":                s.Clip,
		"clip_sample_range":          1.0,
		"dynamic_thresholding_ratio": 0.995,
		"num_train_timesteps":        s.T,
		"prediction_type":            "epsilon",
		"rescale_betas_zero_snr":     false,
		"sample_max_value":           1.0,
		"steps_offset":               0,
		"thresholding":               false,
		"timestep_spacing":           "leading",
		"trained_betas":              nil,
		"variance_type":              "fixed_small",
	}
	switch s.Kind {
	case diffusion.ScheduleLinear:
		c["beta_start"], c["beta_end"] = s.BetaStart, s.BetaEnd
	case diffusion.ScheduleCosine:
		c["beta_schedule"] = "squaredcos_cap_v2"
	default:
		return nil, fmt.Errorf("schedule %q has no diffusers name", s.Kind)
	}
	switch s.Variance {
	case diffusion.VarianceFixedLarge:
		c["variance_type"] = "fixed_large"
	case diffusion.VarianceFixedSmall:
	default:
		return nil, fmt.Errorf("variance %q has no diffusers name", s.Variance)
	}
	if s.Prediction != "" && s.Prediction != "epsilon" {
		c["prediction_type"] = s.Prediction
	}
	return c, nil
}
