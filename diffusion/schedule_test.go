package diffusion

import (
	"math"
	"strings"
	"testing"
)

func TestLinearScheduleMatchesOfficial(t *testing.T) {
	s := mustSchedule(t, "linear", 1000)
	if s.Kind != "linear" || s.T != 1000 || len(s.Betas) != 1000 {
		t.Fatalf("kind %q T %d len %d", s.Kind, s.T, len(s.Betas))
	}
	if s.Betas[0] != 1e-4 || s.Betas[999] != 0.02 {
		t.Fatalf("endpoints %v %v, want 1e-4 and 0.02", s.Betas[0], s.Betas[999])
	}
	for i, b := range s.Betas {
		want := 1e-4 + (0.02-1e-4)*float64(i)/999
		if !near(b, want, 1e-16) {
			t.Fatalf("β_%d = %v, want %v", i, b, want)
		}
	}
	ab := closedFormAlphaBar(s.Betas)
	for i := range ab {
		if !relNear(s.AlphasCumprod[i], ab[i], 1e-12) {
			t.Fatalf("ᾱ_%d = %v, want %v", i, s.AlphasCumprod[i], ab[i])
		}
	}
	// ᾱ_T ≈ exp(−Σβ − Σβ²/2 …) ≈ 4.04e-5 for the paper's schedule.
	if a := s.AlphasCumprod[999]; a < 4.0e-5 || a > 4.1e-5 {
		t.Fatalf("ᾱ_999 = %v, want ≈ 4.04e-5", a)
	}
}

func TestScheduleTables(t *testing.T) {
	for _, kind := range []string{"linear", "cosine"} {
		for _, T := range []int{2, 10, 1000} {
			s := mustSchedule(t, kind, T)
			ab := closedFormAlphaBar(s.Betas)
			check := func(name string, got []float64, want func(i int) float64) {
				t.Helper()
				if len(got) != T {
					t.Fatalf("%s/%d: %s has %d entries", kind, T, name, len(got))
				}
				for i := range got {
					w := want(i)
					if !(near(got[i], w, 1e-300) || relNear(got[i], w, 1e-9)) {
						t.Fatalf("%s/%d: %s[%d] = %v, want %v", kind, T, name, i, got[i], w)
					}
				}
			}
			prev := func(i int) float64 {
				if i == 0 {
					return 1
				}
				return ab[i-1]
			}
			postVar := func(i int) float64 { return s.Betas[i] * (1 - prev(i)) / (1 - ab[i]) }
			check("alphas", s.Alphas, func(i int) float64 { return 1 - s.Betas[i] })
			check("alphas_cumprod", s.AlphasCumprod, func(i int) float64 { return ab[i] })
			check("alphas_cumprod_prev", s.AlphasCumprodPrev, prev)
			check("sqrt_alphas_cumprod", s.SqrtAlphasCumprod, func(i int) float64 { return math.Sqrt(ab[i]) })
			check("sqrt_one_minus_alphas_cumprod", s.SqrtOneMinusAlphasCumprod, func(i int) float64 { return math.Sqrt(1 - ab[i]) })
			check("log_one_minus_alphas_cumprod", s.LogOneMinusAlphasCumprod, func(i int) float64 { return math.Log(1 - ab[i]) })
			check("sqrt_recip_alphas_cumprod", s.SqrtRecipAlphasCumprod, func(i int) float64 { return 1 / math.Sqrt(ab[i]) })
			check("sqrt_recipm1_alphas_cumprod", s.SqrtRecipm1AlphasCumprod, func(i int) float64 { return math.Sqrt((1 - ab[i]) / ab[i]) })
			check("posterior_variance", s.PosteriorVariance, postVar)
			check("posterior_log_variance_clipped", s.PosteriorLogVarianceClipped, func(i int) float64 {
				if i == 0 {
					return math.Log(postVar(1))
				}
				return math.Log(postVar(i))
			})
			check("posterior_mean_coef1", s.PosteriorMeanCoef1, func(i int) float64 { return s.Betas[i] * math.Sqrt(prev(i)) / (1 - ab[i]) })
			check("posterior_mean_coef2", s.PosteriorMeanCoef2, func(i int) float64 {
				return (1 - prev(i)) * math.Sqrt(1-s.Betas[i]) / (1 - ab[i])
			})
			if s.PosteriorVariance[0] != 0 {
				t.Fatalf("%s/%d: β̃_0 = %v, want 0", kind, T, s.PosteriorVariance[0])
			}
			for i := 1; i < T; i++ {
				if !(s.PosteriorVariance[i] > 0 && s.PosteriorVariance[i] <= s.Betas[i]) {
					t.Fatalf("%s/%d: β̃_%d = %v not in (0, β]", kind, T, i, s.PosteriorVariance[i])
				}
			}
		}
	}
}

func TestLinearScheduleScaledForOtherT(t *testing.T) {
	s := mustSchedule(t, "linear", 100)
	if !near(s.Betas[0], 1e-3, 1e-15) || !near(s.Betas[99], 0.2, 1e-15) {
		t.Fatalf("T=100 endpoints %v %v, want 1e-3 and 0.2", s.Betas[0], s.Betas[99])
	}
	// The scaling keeps ᾱ_T near the T = 1000 value so the prior still fits.
	if a := s.AlphasCumprod[99]; a > 1e-4 {
		t.Fatalf("ᾱ_T = %v for T=100", a)
	}
	s = mustSchedule(t, "linear", 10)
	for _, b := range s.Betas {
		if b > 0.999 {
			t.Fatalf("β = %v above 0.999", b)
		}
	}
}

func TestCosineSchedule(t *testing.T) {
	const T = 1000
	s := mustSchedule(t, "cosine", T)
	f := func(u float64) float64 {
		c := math.Cos((u/T + 0.008) / 1.008 * math.Pi / 2)
		return c * c
	}
	clipped := 0
	for i, b := range s.Betas {
		if b > 0.999 || b <= 0 {
			t.Fatalf("β_%d = %v", i, b)
		}
		if b == 0.999 {
			clipped++
			continue
		}
		if clipped > 0 {
			t.Fatalf("unclipped β_%d after a clipped one", i)
		}
		// Code index i is paper step i+1: ᾱ = f(i+1)/f(0).
		if want := f(float64(i+1)) / f(0); !relNear(s.AlphasCumprod[i], want, 1e-9) {
			t.Fatalf("ᾱ_%d = %v, want f(t)/f(0) = %v", i, s.AlphasCumprod[i], want)
		}
	}
	if clipped == 0 || s.Betas[T-1] != 0.999 {
		t.Fatalf("expected the last β clipped to 0.999, got %v (%d clipped)", s.Betas[T-1], clipped)
	}
	// β_0 is tiny: 1 − f(1)/f(0).
	if want := 1 - f(1)/f(0); !relNear(s.Betas[0], want, 1e-12) || s.Betas[0] > 1e-4 {
		t.Fatalf("β_0 = %v, want %v", s.Betas[0], want)
	}
}

func TestScheduleErrors(t *testing.T) {
	for _, c := range []struct {
		kind string
		T    int
		msg  string
	}{
		{"quad", 1000, "unknown schedule"},
		{"", 1000, "unknown schedule"},
		{"linear", 1, "T ≥ 2"},
		{"linear", 0, "T ≥ 2"},
		{"cosine", -3, "T ≥ 2"},
	} {
		s, err := NewSchedule(c.kind, c.T)
		if err == nil || s != nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("NewSchedule(%q, %d) = %v, %v; want error containing %q", c.kind, c.T, s, err, c.msg)
		}
	}
	for _, betas := range [][]float64{{0.1}, {0, 0.1}, {0.1, 1.5}, {0.1, math.NaN()}, {0.1, -0.2}, {0.1, 1}} {
		if _, err := NewScheduleFromBetas("custom", betas); err == nil {
			t.Errorf("NewScheduleFromBetas(%v) accepted", betas)
		}
	}
	s, err := NewScheduleFromBetas("custom", []float64{0.1, 0.2, 0.3})
	if err != nil || s.Kind != "custom" || s.T != 3 {
		t.Fatalf("custom schedule: %v %v", s, err)
	}
}

func TestModelVarianceTables(t *testing.T) {
	s := mustSchedule(t, "linear", 1000)
	v, lv, err := s.ModelVariance("fixedlarge")
	if err != nil {
		t.Fatal(err)
	}
	ab := closedFormAlphaBar(s.Betas)
	beta1Tilde := s.Betas[1] * (1 - ab[0]) / (1 - ab[1])
	if !relNear(lv[0], math.Log(beta1Tilde), 1e-12) {
		t.Fatalf("fixedlarge log σ²_0 = %v, want log β̃_1 = %v", lv[0], math.Log(beta1Tilde))
	}
	for i := 1; i < 1000; i++ {
		if v[i] != s.Betas[i] || !relNear(lv[i], math.Log(s.Betas[i]), 1e-14) {
			t.Fatalf("fixedlarge at %d: %v %v", i, v[i], lv[i])
		}
	}
	v, lv, err = s.ModelVariance("fixedsmall")
	if err != nil {
		t.Fatal(err)
	}
	if v[0] != 0 || !relNear(lv[0], math.Log(beta1Tilde), 1e-12) || !relNear(lv[500], math.Log(v[500]), 1e-14) {
		t.Fatalf("fixedsmall: %v %v %v", v[0], lv[0], lv[500])
	}
	if _, _, err := s.ModelVariance("learned"); err == nil {
		t.Fatal("learned variance accepted")
	}
}
