package run

import (
	"fmt"

	"github.com/ddpm-studio/ddpm-studio/compute"
	"github.com/ddpm-studio/ddpm-studio/internal/bytesize"
)

// OpenDevice opens the device named name ("auto", "cpu", "cuda"; "" is "auto"): the GPU
// where one is asked for and can be used. With "auto" and no usable GPU it is the CPU,
// and note says why (nothing in builds without CUDA); "cuda" without one is an error in
// words.
func OpenDevice(name string) (*compute.Device, string, error) {
	if name == "" {
		name = compute.DeviceAuto
	}
	d, note, err := compute.OpenDevice(name)
	if err != nil {
		return nil, "", fmt.Errorf("--device %s: %w", name, err)
	}
	return d, note, nil
}

// checkDeviceMemory refuses a training step that would not fit in the GPU's free memory.
func checkDeviceMemory(d *compute.Device, net *compute.UNet, batch int) error {
	if !d.IsGPU() {
		return nil
	}
	free, _, err := d.MemInfo()
	if err != nil {
		return nil // unknown: the allocation itself will say
	}
	need, err := net.DeviceTrainBytes(d, batch)
	if err != nil || need <= free {
		return err
	}
	return fmt.Errorf("training %s at batch %d needs about %s of GPU memory, and %s is free on %s: lower the batch size",
		net.Config, batch, bytesize.Format(need), bytesize.Format(free), d)
}
