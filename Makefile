# DDPM Studio. `make run` and `make test` install what a fresh Debian machine lacks.
SHELL := /bin/bash
GO ?= go
BIN := bin/ddpm-studio

# Fyne reads the locale at start-up and cannot parse C or C.UTF-8 (it logs an error); use
# English where no real locale is set.
ifneq ($(filter-out C C.UTF-8 C.utf8 POSIX,$(or $(LANG),C)),)
export LANG
else
export LANG := en_US.UTF-8
endif

# Debian packages. To build: a C compiler, OpenBLAS, and OpenGL/X11 headers for Fyne and our
# shaders. To test, also: Debian's Python with PyTorch and NumPy for the reference tests (never
# used at run time), and a virtual X server with Mesa's software OpenGL and ImageMagick's
# `import` for the real-window and GL-vs-CPU tests.
BUILD_PACKAGES := gcc libc6-dev libopenblas-dev libgl1-mesa-dev xorg-dev
TEST_PACKAGES := $(BUILD_PACKAGES) python3 python3-numpy python3-torch xvfb xauth libgl1-mesa-dri imagemagick
DEB_PACKAGES := $(BUILD_PACKAGES)

# The tests open windows: without a display they run under a virtual one.
XVFB := $(if $(DISPLAY),,xvfb-run -a -s "-screen 0 1400x900x24")

.PHONY: all build run test deps vet bench clean package build-headless build-cuda test-cuda ptx check-cuda \
	cuda-deps cuda-shim-symbols gpu-check-bundle

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

# run opens the window with the built-in MNIST set selected.
run: deps build
	./$(BIN)

test: DEB_PACKAGES := $(TEST_PACKAGES)
test: deps
	$(GO) vet ./...
	$(XVFB) $(GO) test -count=1 -timeout 30m ./...

# bench times ours and the PyTorch reference side by side (see bench/compare); keep the machine quiet.
bench: DEB_PACKAGES := $(TEST_PACKAGES)
bench: deps build
	$(GO) run ./bench/compare -bin $(BIN)

clean:
	rm -rf bin dist build

# --- Headless and CUDA builds -------------------------------------------------------------
#
# build-headless makes bin/ddpm-studio-headless: the command line without the window (no Fyne,
# no X11 or OpenGL libraries; build tag headless), with OpenBLAS linked statically, so that it
# starts on a server that has only glibc. build-cuda makes bin/ddpm-studio-cuda, the same with
# the CUDA backend (build tag ddpmcuda; see compute/cuda/README.md): at run time it needs the
# NVIDIA driver and nothing else, and starts, saying why, where there is none.
#
# OpenBLAS: the linker takes libopenblas.a from build/static, where it is the only OpenBLAS,
# ahead of the system's libopenblas.so. Its per-core kernel tables (gotoblas_*) are exported
# so that the running program can ask which cores the library has (dlsym), as with the shared
# library. The CUDA build's -lcuda finds build/cuda/libcuda.a, the shim (compute/cuda/shim),
# the same way.
HEADLESS_BIN := bin/ddpm-studio-headless
CUDA_BIN := bin/ddpm-studio-cuda
STATIC_DIR := $(CURDIR)/build/static
SHIM_DIR := $(CURDIR)/build/cuda
STATIC_LDFLAGS := -s -w -extldflags '-Wl,--export-dynamic-symbol=gotoblas_*'
# Ahead of every -L of the packages (gorgonia.org/cu names /usr/lib/x86_64-linux-gnu itself).
STATIC_CGO := CGO_LDFLAGS="-L$(STATIC_DIR)"
CUDA_CGO := CGO_LDFLAGS="-L$(SHIM_DIR) -L$(STATIC_DIR)"
# CUDA 11.8 from Debian bookworm's non-free component: nvcc (for make ptx) and cuda.h (which
# gorgonia.org/cu compiles against). Only the CUDA targets install them (about 860 MB).
CUDA_PACKAGES := nvidia-cuda-toolkit nvidia-cuda-dev
NONFREE_SOURCES := /etc/apt/sources.list.d/ddpm-studio-nonfree.sources
PTX := compute/cuda/kernels.ptx
KERNEL_SOURCES := $(wildcard compute/gpu/kernels/*.cu compute/gpu/kernels/*.cuh)
NVCC_FLAGS := -ptx -arch=compute_80 -Werror all-warnings

$(STATIC_DIR)/libopenblas.a:
	@mkdir -p $(STATIC_DIR)
	@lib=$$(readlink -f "$$(gcc -print-file-name=libopenblas.a)"); \
	test -f "$$lib" || { echo "libopenblas.a not found: install libopenblas-dev"; exit 1; }; \
	ln -sf "$$lib" $@

$(SHIM_DIR)/libcuda.a: compute/cuda/shim/shim.c compute/cuda/shim/shim.h compute/cuda/shim/symbols.inc
	@mkdir -p $(SHIM_DIR)
	gcc -O2 -Wall -Werror -fPIC -c -o $(SHIM_DIR)/shim.o compute/cuda/shim/shim.c
	ar rcs $@ $(SHIM_DIR)/shim.o

build-headless: DEB_PACKAGES := gcc libc6-dev libopenblas-dev
build-headless: deps $(STATIC_DIR)/libopenblas.a
	$(STATIC_CGO) $(GO) build -tags headless -ldflags "$(STATIC_LDFLAGS)" -o $(HEADLESS_BIN) ./app
	@! ldd $(HEADLESS_BIN) | grep -E 'libopenblas|libgfortran|libX|libGL' || { echo "$(HEADLESS_BIN) links a library a server may lack"; exit 1; }

build-cuda: DEB_PACKAGES := gcc libc6-dev libopenblas-dev
build-cuda: deps cuda-deps $(STATIC_DIR)/libopenblas.a $(SHIM_DIR)/libcuda.a
	$(CUDA_CGO) $(GO) build -tags "headless ddpmcuda" -ldflags "$(STATIC_LDFLAGS)" -o $(CUDA_BIN) ./app
	@! ldd $(CUDA_BIN) | grep -E 'libcuda|libcublas|libopenblas|libgfortran|libX|libGL' || { echo "$(CUDA_BIN) links a library a GPU server may lack"; exit 1; }

# cuda-deps adds the non-free component to the apt sources if needed and installs CUDA 11.8.
cuda-deps:
	@missing=$$(for p in $(CUDA_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		set -- $$missing; \
		if ! apt-cache policy $$1 2>/dev/null | grep -q 'Candidate:.*[0-9]'; then \
			printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: contrib non-free non-free-firmware\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
				| $$SUDO tee $(NONFREE_SOURCES) >/dev/null; \
		fi; \
		echo "installing (about 860 MB): $$missing"; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# ptx compiles the device kernels to the PTX that the CUDA backend embeds (commit the result).
ptx: cuda-deps
	nvcc $(NVCC_FLAGS) -o $(PTX) compute/gpu/kernels/all.cu

# test-cuda runs the tests of the CUDA build: on the emulator and, where there is one, the GPU.
test-cuda: deps cuda-deps $(SHIM_DIR)/libcuda.a $(STATIC_DIR)/libopenblas.a
	$(CUDA_CGO) $(GO) vet -tags "headless ddpmcuda" ./compute/... ./app
	$(CUDA_CGO) $(GO) test -count=1 -tags ddpmcuda ./compute/ ./compute/cuda/...

# cuda-shim-symbols lists the driver functions gorgonia.org/cu calls, for the shim.
cuda-shim-symbols: cuda-deps
	scripts/cuda-shim-symbols.sh > compute/cuda/shim/symbols.inc

# check-cuda is CI's check of the CUDA build without a GPU: the embedded PTX is what nvcc makes
# from the committed sources, ptxas assembles it for sm_90 (H100/H200), the shim covers every
# driver function cu calls, and the CUDA binary builds, starts without a GPU and says why.
check-cuda: cuda-deps build-cuda
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	nvcc $(NVCC_FLAGS) -o $$tmp/kernels.ptx compute/gpu/kernels/all.cu && \
	cmp $$tmp/kernels.ptx $(PTX) || { echo "$(PTX) is not what nvcc makes from compute/gpu/kernels: run make ptx"; exit 1; }; \
	ptxas -arch=sm_90 -o $$tmp/kernels.cubin $(PTX) && echo "ptxas -arch=sm_90: $(PTX) assembles"; \
	scripts/cuda-shim-symbols.sh > $$tmp/symbols.inc && cmp $$tmp/symbols.inc compute/cuda/shim/symbols.inc \
		|| { echo "compute/cuda/shim/symbols.inc is out of date: run make cuda-shim-symbols"; exit 1; }
	@echo "ldd $(CUDA_BIN):"; ldd $(CUDA_BIN)
	$(CUDA_BIN) --help >/dev/null && echo "$(CUDA_BIN) starts"

# gpu-check-bundle packs what scripts/gpu-check.sh needs on a GPU machine that has no Go:
# the CUDA binary and the compute package's test binary of the CUDA build, xz-compressed into
# build/gpu-check.tar.xz (carried to the GPU machine with the working tree).
gpu-check-bundle: build-cuda
	$(CUDA_CGO) $(GO) test -c -tags ddpmcuda -ldflags "$(STATIC_LDFLAGS)" -o build/gpu-check/compute.test ./compute/
	cp $(CUDA_BIN) build/gpu-check/ddpm-studio-cuda
	@! ldd build/gpu-check/compute.test | grep -E 'libcuda|libopenblas|libgfortran' || { echo "the test binary links a library the GPU machine lacks"; exit 1; }
	tar -C build/gpu-check -cf - compute.test ddpm-studio-cuda | xz -6 -T2 > build/gpu-check.tar.xz
	@ls -l build/gpu-check/compute.test build/gpu-check/ddpm-studio-cuda build/gpu-check.tar.xz

# package builds a Linux bundle, dist/ddpm-studio-VERSION-linux-ARCH.tar.xz: the binary, a .desktop entry,
# the icon and the Makefile that `fyne package` (fyne.io/tools) generates; see packaging/README.md.
# fyne reads FyneApp.toml from the main package's folder (--src) and rewrites it (Build += 1), and it
# drops a generated .go file into that folder while building, so it runs on a throw-away copy of the
# tree with FyneApp.toml copied into app/: the working tree is never touched.
FYNE_TOOLS_VERSION := v1.7.4
FYNE := bin/tools/fyne-$(FYNE_TOOLS_VERSION)/fyne
PKG_NAME = $(shell sed -n 's/^Name *= *"\(.*\)"/\1/p' FyneApp.toml)
PKG_VERSION = $(shell sed -n 's/^Version *= *"\(.*\)"/\1/p' FyneApp.toml)
PKG_TARBALL = dist/ddpm-studio-$(PKG_VERSION)-linux-$(shell $(GO) env GOARCH).tar.xz

# Debian packages for the packaged (cgo, OpenGL/X11) build; `deps` installs them when run for package.
package: DEB_PACKAGES := $(BUILD_PACKAGES) xz-utils

$(FYNE):
	GOBIN=$(CURDIR)/$(dir $(FYNE)) GOFLAGS= $(GO) install fyne.io/tools/cmd/fyne@$(FYNE_TOOLS_VERSION)

package: deps $(FYNE)
	@set -e; stage=$$(mktemp -d); trap 'rm -rf "$$stage"' EXIT; \
	tar -cf - --exclude=./.git --exclude=./bin --exclude=./dist --exclude=./runs \
		--exclude='*.test' --exclude='*.prof' . | tar -xf - -C "$$stage"; \
	cp FyneApp.toml "$$stage/app/"; \
	echo "fyne package (cold build: several minutes)"; \
	(cd "$$stage" && "$(CURDIR)/$(FYNE)" package --verbose --target linux --release --src "$$stage/app" \
		--icon "$(CURDIR)/app/icon.png" --executable "$$stage/ddpm-studio"); \
	mkdir -p dist; mv "$$stage/$(PKG_NAME).tar.xz" "$(PKG_TARBALL)"; \
	echo "bundle: $(PKG_TARBALL)"
