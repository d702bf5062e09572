//go:build headless

package main

import "errors"

// Run, in a headless build (make build-headless: no Fyne, no X11 or OpenGL libraries,
// for servers), says that there is no window.
func (c *guiCmd) Run(e *env) error {
	return errors.New("this is a headless build of ddpm-studio, without the window: use a subcommand such as train or sample (see --help)")
}
