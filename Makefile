# DDPM Studio. `make run` and `make test` install what a fresh Debian machine lacks.
SHELL := /bin/bash
GO ?= go
BIN := bin/ddpm-studio
export LANG ?= C.UTF-8

# Debian packages the build and the tests need: a C compiler and OpenBLAS for cgo, Debian's Python with
# PyTorch and NumPy for the reference tests (never used at run time).
DEB_PACKAGES := gcc libc6-dev libopenblas-dev python3 python3-numpy python3-torch

.PHONY: all build run test deps vet bench clean

all: build

# deps installs the missing Debian packages (needs root or sudo).
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

build:
	$(GO) build -o $(BIN) ./app

run: deps build
	./$(BIN)

test: deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...

# bench times ours and the PyTorch reference side by side (see bench/compare); keep the machine quiet.
bench: deps build
	$(GO) run ./bench/compare -bin $(BIN)

clean:
	rm -rf bin
