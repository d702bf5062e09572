#!/usr/bin/env bash
# Takes the README's screenshots of the four screens: the app under Xvfb, driven with xdotool
# (Debian: xvfb xdotool imagemagick). RUNS must hold a trained mnist run (train one with
# `bin/ddpm-studio train --data mnist --run RUNS/mnist-run`). Click positions assume the
# window's default 1280×820 size and the default theme.
set -euo pipefail
RUNS=${1:?usage: docs/screenshots.sh RUNS_FOLDER}
cd "$(dirname "$0")/.."
export LANG=en_US.UTF-8 DISPLAY=:97
Xvfb $DISPLAY -screen 0 1400x900x24 & xvfb=$!
trap 'kill $app $xvfb 2>/dev/null' EXIT
sleep 1
bin/ddpm-studio gui --runs "$RUNS" & app=$!
sleep 8
win=$(xdotool search --name "DDPM Studio" | head -1)
click() { xdotool mousemove --window "$win" "$1" "$2" click 1; sleep "${3:-1}"; }
shot() { import -window "DDPM Studio" "docs/$1.png"; }

shot screen-dataset
click 104 21                  # Train
click 250 61; click 220 134   # the run
click 66 510 45               # Start; wait for a preview
shot screen-train
click 320 510 3               # Stop (saves a checkpoint)
click 167 21                  # Sample
click 98 410 20               # Sample (DDIM 50, 16 images)
shot screen-sample
click 237 21 3                # Gallery
shot screen-gallery
