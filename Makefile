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

.PHONY: all build run test deps vet bench clean package

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
	rm -rf bin dist

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
