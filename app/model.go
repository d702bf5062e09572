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
	Params int64          `json:"params"`
	Layers []modelLayer   `json:"layers"`
}

type modelLayer struct {
	Name   string `json:"name"`
	Params int64  `json:"params"`
}

// Run summarises.
func (c *modelCmd) Run(e *env) error {
	cfg, err := c.config()
	if err != nil {
		return err
	}
	params, err := compute.ParamShapes(cfg) // names and shapes only: any model can be described
	if err != nil {
		return err
	}
	res := modelResult{Config: cfg}
	e.say("%s: %s", c.Preset, cfg)
	tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
	// One row per layer (the name without .weight/.bias), in the order the forward pass uses them.
	idx := map[string]int{}
	for _, p := range params {
		layer := p.Name[:strings.LastIndex(p.Name, ".")]
		i, ok := idx[layer]
		if !ok {
			i = len(res.Layers)
			idx[layer] = i
			res.Layers = append(res.Layers, modelLayer{Name: layer})
		}
		res.Layers[i].Params += p.Size()
		res.Params += p.Size()
		if c.Params {
			fmt.Fprintf(tw, "  %s\t%v\t%d\n", p.Name, p.Shape, p.Size())
		}
	}
	if !c.Params {
		for _, l := range res.Layers {
			fmt.Fprintf(tw, "  %s\t%d\n", l.Name, l.Params)
		}
	}
	tw.Flush()
	e.say("%d parameters in %d tensors", res.Params, len(params))
	return e.result(res)
}
