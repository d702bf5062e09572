package weights

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ddpm-studio/ddpm-studio/internal/limitread"
)

// Diffusers folders: DDPMPipeline.save_pretrained writes
//
//	model_index.json
//	unet/config.json, unet/diffusion_pytorch_model.safetensors (or .bin)
//	scheduler/scheduler_config.json

const (
	modelIndexFile = "model_index.json"
	unetConfigFile = "config.json"
	schedulerFile  = "scheduler_config.json"
	weightsBase    = "diffusion_pytorch_model"
	// metaWeights is the safetensors metadata key where DDPM Studio records "ema" or "raw".
	metaWeights = "weights"
	maxJSON     = 1 << 20
)

// folderInfo is what a diffusers folder says besides its tensors.
type folderInfo struct {
	config    []byte // unet/config.json
	scheduler []byte // scheduler/scheduler_config.json, or nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// isUNetFolder reports a folder whose config.json is a UNet2DModel's.
func isUNetFolder(dir string) bool {
	b, err := limitread.File(filepath.Join(dir, unetConfigFile), maxJSON)
	if err != nil {
		return false
	}
	var c struct {
		ClassName string `json:"_class_name"`
	}
	return json.Unmarshal(b, &c) == nil && c.ClassName == "UNet2DModel"
}

// openFolder reads a diffusers pipeline folder or its unet folder; weights,
// when given, is the weights file to read instead of the usual one.
func openFolder(dir string, opt Options, weights ...string) (*Model, error) {
	unet := dir
	var schedPath string
	switch {
	case exists(filepath.Join(dir, modelIndexFile)):
		b, err := limitread.File(filepath.Join(dir, modelIndexFile), maxJSON)
		if err != nil {
			return nil, err
		}
		var idx map[string]any
		if err := json.Unmarshal(b, &idx); err != nil {
			return nil, fmt.Errorf("%s: %w", modelIndexFile, err)
		}
		if u, ok := idx["unet"].([]any); ok && len(u) == 2 && u[1] != "UNet2DModel" {
			return nil, fmt.Errorf("%s: the pipeline's unet is a %v; DDPM Studio reads UNet2DModel", modelIndexFile, u[1])
		}
		if _, ok := idx["unet"]; !ok {
			return nil, fmt.Errorf("%s names no unet: not a DDPM pipeline", modelIndexFile)
		}
		unet = filepath.Join(dir, "unet")
		schedPath = filepath.Join(dir, "scheduler", schedulerFile)
	case exists(filepath.Join(dir, unetConfigFile)):
		schedPath = filepath.Join(dir, "..", "scheduler", schedulerFile)
	case exists(filepath.Join(dir, "unet", unetConfigFile)):
		unet = filepath.Join(dir, "unet")
		schedPath = filepath.Join(dir, "scheduler", schedulerFile)
	default:
		return nil, errors.New("a folder without model_index.json or config.json: not a diffusers folder")
	}
	var info folderInfo
	var err error
	if info.config, err = limitread.File(filepath.Join(unet, unetConfigFile), maxJSON); err != nil {
		return nil, fmt.Errorf("unet config: %w", err)
	}
	if exists(schedPath) {
		if info.scheduler, err = limitread.File(schedPath, maxJSON); err != nil {
			return nil, fmt.Errorf("scheduler config: %w", err)
		}
	}
	var wpath string
	if len(weights) > 0 {
		wpath = weights[0]
	} else if wpath, err = findWeights(unet); err != nil {
		return nil, err
	}
	src, err := openFile(wpath)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(wpath), err)
	}
	defer src.close()
	if strings.HasSuffix(src.format, "file") {
		src.format = "diffusers folder (safetensors)"
	} else {
		src.format = "diffusers folder (.bin)"
	}
	if info.scheduler == nil {
		src.format += ", no scheduler config"
	}
	root := dir
	if unet == dir && filepath.Base(dir) == "unet" {
		root = filepath.Dir(dir)
	}
	m, err := build(src, root, &info, opt)
	if err != nil {
		return nil, err
	}
	m.Source = dir
	if info.scheduler == nil {
		m.Warnings = append(m.Warnings, "the folder has no scheduler config: took the paper's schedule ("+m.Schedule.String()+")")
	}
	return m, nil
}

// findWeights picks the weights file of a unet folder: diffusion_pytorch_model.safetensors,
// else .bin, else a variant (fp16, …) of either.
func findWeights(unet string) (string, error) {
	for _, ext := range []string{".safetensors", ".bin"} {
		if p := filepath.Join(unet, weightsBase+ext); exists(p) {
			return p, nil
		}
	}
	var variants []string
	for _, ext := range []string{".safetensors", ".bin"} {
		m, _ := filepath.Glob(filepath.Join(unet, weightsBase+".*"+ext))
		sort.Strings(m)
		variants = append(variants, m...)
	}
	if len(variants) > 0 {
		return variants[0], nil
	}
	if m, _ := filepath.Glob(filepath.Join(unet, weightsBase+"*.index.json")); len(m) > 0 {
		return "", fmt.Errorf("%s holds sharded weights (%s), which DDPM Studio does not read", unet, filepath.Base(m[0]))
	}
	return "", fmt.Errorf("%s has no %s.safetensors or %s.bin", unet, weightsBase, weightsBase)
}

// Looks reports whether path looks like model weights rather than images: a diffusers
// folder (a pipeline folder with model_index.json, or a UNet2DModel folder), or a file
// that starts as a PyTorch checkpoint (zip, legacy pickle stream) or a safetensors file
// does. It reads at most a few hundred bytes; Open says whether the weights are usable.
func Looks(path string) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	if fi.IsDir() {
		return exists(filepath.Join(path, modelIndexFile)) || isUNetFolder(path)
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 512)
	n, _ := f.ReadAt(head, 0)
	head = head[:n]
	return (len(head) >= 4 && string(head[:4]) == "PK\x03\x04") || isLegacyTorch(head) || isTar(head) || isSafetensors(head, fi.Size())
}
