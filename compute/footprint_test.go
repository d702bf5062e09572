package compute

import (
	"strings"
	"testing"
)

// TestParamCountMatchesModel: the count from shapes alone equals the parameters a built
// model allocates (the paper's CIFAR-10 model: 35,746,307, ddpm-reference.md).
func TestParamCountMatchesModel(t *testing.T) {
	for _, name := range []string{"tiny", "mnist", "cifar10"} {
		cfg, _ := PresetConfig(name)
		n, err := ParamCount(cfg)
		if err != nil {
			t.Fatal(err)
		}
		u, err := NewUNet(cfg, 0)
		if err != nil {
			t.Fatal(err)
		}
		if n != int64(u.NumParams()) {
			t.Errorf("%s: ParamCount %d, model has %d", name, n, u.NumParams())
		}
		if name == "cifar10" && n != 35_746_307 {
			t.Errorf("cifar10: %d parameters, the paper's model has 35,746,307", n)
		}
	}
}

// TestParamCountDoesNotAllocate: a model of about 10¹² parameters is counted, not built
// (it would need terabytes).
func TestParamCountDoesNotAllocate(t *testing.T) {
	cfg, _ := PresetConfig("mnist")
	cfg.ChMult = []int{1, 2, 2000}
	n, err := ParamCount(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n < 1e11 {
		t.Fatalf("ParamCount = %d, want more than 1e11", n)
	}
}

// TestTrainBytesEqualsPrepare: the plan made without allocating equals the estimate of
// the real program (Trainer.Prepare builds and allocates it), for any batch.
func TestTrainBytesEqualsPrepare(t *testing.T) {
	cfg, _ := PresetConfig("tiny")
	u, err := NewUNet(cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTrainer(u, DefaultOptim(), 0)
	defer tr.Close()
	for _, n := range []int{1, 3, 8} {
		want, err := tr.Prepare(n)
		if err != nil {
			t.Fatal(err)
		}
		got, err := u.TrainBytes(n)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("batch %d: TrainBytes %d, Prepare %d", n, got, want)
		}
		if m, _ := u.MaxTrainBatch(1000, got); m < n {
			t.Errorf("batch %d: MaxTrainBatch(%d bytes) = %d", n, got, m)
		}
	}
	// A batch of a billion is planned, not allocated (it would need terabytes).
	b, err := u.TrainBytes(1_000_000_000)
	if err != nil || b < 1e12 {
		t.Fatalf("batch 1e9: %d bytes, %v", b, err)
	}
}

// TestValidateAttention: attention must name a level's resolution (a typo used to drop
// attention from the model without a word).
func TestValidateAttention(t *testing.T) {
	cfg, _ := PresetConfig("mnist") // levels 28, 14, 7
	cfg.AttnResolutions = []int{5}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "28, 14, 7") {
		t.Fatalf("attention at 5: %v", err)
	}
	cfg.AttnResolutions = []int{7, 28}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}
