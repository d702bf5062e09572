package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/ddpm-studio/ddpm-studio/compute"
)

// modelCmd is `ddpm-studio model`.
type modelCmd struct {
	modelFlags `embed:""`
	Params     bool `help:"List every parameter tensor with its shape."`
}

type modelResult struct {
	Config compute.Config `json:"config"`
	Params int            `json:"params"`
	Layers []modelLayer   `json:"layers"`
}

type modelLayer struct {
	Name   string `json:"name"`
	Params int    `json:"params"`
}

// Run summarises.
func (c *modelCmd) Run(e *env) error {
	cfg, err := c.config()
	if err != nil {
		return err
	}
	net, err := compute.NewUNet(cfg, 0)
	if err != nil {
		return err
	}
	res := modelResult{Config: cfg, Params: net.NumParams()}
	e.say("%s: %s", c.Preset, cfg)
	tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
	// One row per layer (the name without .weight/.bias), in the order the forward pass uses them.
	idx := map[string]int{}
	for _, p := range net.Params {
		layer := p.Name[:strings.LastIndex(p.Name, ".")]
		i, ok := idx[layer]
		if !ok {
			i = len(res.Layers)
			idx[layer] = i
			res.Layers = append(res.Layers, modelLayer{Name: layer})
		}
		res.Layers[i].Params += len(p.Data)
		if c.Params {
			fmt.Fprintf(tw, "  %s\t%v\t%d\n", p.Name, p.Shape, len(p.Data))
		}
	}
	if !c.Params {
		for _, l := range res.Layers {
			fmt.Fprintf(tw, "  %s\t%d\n", l.Name, l.Params)
		}
	}
	tw.Flush()
	e.say("%d parameters in %d tensors", res.Params, len(net.Params))
	return e.result(res)
}
