// Command gen writes the two files that follow from the kernels' declarations in
// compute/gpu/kernels/*.cu: compute/gpu/launch_gen.go (the kernel table, a typed Go
// launcher per kernel and the constants the launches depend on) and
// compute/gpu/kernels/dispatch_gen.c (the CPU emulator's call of each kernel with its
// arguments unpacked). Run it anywhere in the repository (go generate ./compute/gpu); the
// test in this folder fails when the committed files differ from what it writes.
//
// A kernel is declared as KERNEL(name)(params); each parameter is a pointer, long,
// unsigned long long or double: gorgonia.org/cu passes every argument as 8 bytes.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"go/format"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// kernelDir is the folder of the sources, relative to the repository root.
const kernelDir = "compute/gpu/kernels"

// Output files, relative to the repository root.
const (
	goOut = "compute/gpu/launch_gen.go"
	cOut  = "compute/gpu/kernels/dispatch_gen.c"
)

// constants are the #defines of the sources that Go launches depend on.
var constants = []string{"RED_THREADS", "GEMM_TILE", "GEMM_K", "MASK_BLOCK", "MASK_RUN"}

type param struct {
	decl string // as written, e.g. "const float *RESTRICT x"
	name string
	kind byte // 'p' pointer, 'l' long, 'u' unsigned long long, 'd' double
}

type kernel struct {
	name   string
	params []param
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("gen: ")
	root, err := repoRoot()
	if err != nil {
		log.Fatal(err)
	}
	files, err := render(root)
	if err != nil {
		log.Fatal(err)
	}
	for path, b := range files {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

// repoRoot is the nearest folder at or above the working directory with a go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod at or above the working directory")
		}
		dir = parent
	}
}

// render returns the generated files, by path under root (the repository root), from
// the kernel sources under root.
func render(root string) (map[string][]byte, error) {
	src, err := sources(filepath.Join(root, kernelDir))
	if err != nil {
		return nil, err
	}
	ks, err := parseKernels(src)
	if err != nil {
		return nil, err
	}
	defs, err := parseDefines(src)
	if err != nil {
		return nil, err
	}
	g, err := renderGo(ks, defs)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{filepath.Join(root, goOut): g, filepath.Join(root, cOut): renderC(ks)}, nil
}

// sources returns the text of the files that all.cu includes, in its order.
func sources(dir string) (string, error) {
	all, err := os.ReadFile(filepath.Join(dir, "all.cu"))
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, m := range regexp.MustCompile(`(?m)^#include "([^"]+)"`).FindAllStringSubmatch(string(all), -1) {
		text, err := os.ReadFile(filepath.Join(dir, m[1]))
		if err != nil {
			return "", err
		}
		b.Write(text)
		b.WriteByte('\n')
	}
	return b.String(), nil
}

var (
	kernelRE = regexp.MustCompile(`(?s)\nKERNEL\((\w+)\)\(([^)]*)\)`)
	defineRE = regexp.MustCompile(`(?m)^#define (\w+) (\d+)\s*$`)
	identRE  = regexp.MustCompile(`(\w+)\s*$`)
)

func parseKernels(src string) ([]kernel, error) {
	var ks []kernel
	for _, m := range kernelRE.FindAllStringSubmatch(src, -1) {
		k := kernel{name: m[1]}
		for _, p := range strings.Split(m[2], ",") {
			p = strings.Join(strings.Fields(p), " ")
			id := identRE.FindStringSubmatch(p)
			if id == nil {
				return nil, fmt.Errorf("kernel %s: cannot read parameter %q", k.name, p)
			}
			typ := strings.TrimSpace(strings.TrimSuffix(p, id[1]))
			pa := param{decl: p, name: id[1]}
			switch {
			case strings.Contains(typ, "*"):
				pa.kind = 'p'
			case typ == "long":
				pa.kind = 'l'
			case typ == "double":
				pa.kind = 'd'
			case typ == "unsigned long long":
				pa.kind = 'u'
			default:
				return nil, fmt.Errorf("kernel %s: parameter %q: only pointers, long, unsigned long long and double are passed as 8 bytes", k.name, p)
			}
			switch pa.name {
			case "be", "grid", "block", "args":
				return nil, fmt.Errorf("kernel %s: parameter name %q is taken by the launcher", k.name, pa.name)
			}
			k.params = append(k.params, pa)
		}
		ks = append(ks, k)
	}
	if len(ks) == 0 {
		return nil, errors.New("no KERNEL declarations found")
	}
	return ks, nil
}

func parseDefines(src string) (map[string]string, error) {
	all := map[string]string{}
	for _, m := range defineRE.FindAllStringSubmatch(src, -1) {
		all[m[1]] = m[2]
	}
	out := map[string]string{}
	for _, c := range constants {
		v, ok := all[c]
		if !ok {
			return nil, fmt.Errorf("#define %s not found", c)
		}
		out[c] = v
	}
	return out, nil
}

// goName turns snake_case into lowerCamelCase with a k prefix: swish_fwd → kSwishFwd.
func goName(s string) string {
	var b strings.Builder
	b.WriteString("k")
	for _, part := range strings.Split(s, "_") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

// goConst turns RED_THREADS into RedThreads.
func goConst(s string) string {
	var b strings.Builder
	for _, part := range strings.Split(strings.ToLower(s), "_") {
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

func renderGo(ks []kernel, defs map[string]string) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("// Code generated by compute/gpu/kernels/gen from compute/gpu/kernels/*.cu; DO NOT EDIT.\n\npackage gpu\n\nimport \"math\"\n\n")
	b.WriteString("// Constants of the kernel sources that launches depend on.\nconst (\n")
	for _, c := range constants {
		fmt.Fprintf(&b, "\t%s = %s // %s\n", goConst(c), defs[c], c)
	}
	b.WriteString(")\n\n")
	b.WriteString("// Kernels lists every kernel of all.cu in source order; Index is its position.\nvar Kernels = []Kernel{\n")
	for i, k := range ks {
		decls := make([]string, len(k.params))
		for j, p := range k.params {
			decls[j] = fmt.Sprintf("%q", p.decl)
		}
		fmt.Fprintf(&b, "\t{Name: %q, Index: %d, Params: []string{%s}},\n", k.name, i, strings.Join(decls, ", "))
	}
	b.WriteString("}\n")
	for i, k := range ks {
		var ps, args []string
		for _, p := range k.params {
			switch p.kind {
			case 'p':
				ps = append(ps, p.name+" Ptr")
				args = append(args, "uint64("+p.name+")")
			case 'l':
				ps = append(ps, p.name+" int")
				args = append(args, "uint64(int64("+p.name+"))")
			case 'u':
				ps = append(ps, p.name+" uint64")
				args = append(args, p.name)
			case 'd':
				ps = append(ps, p.name+" float64")
				args = append(args, "math.Float64bits("+p.name+")")
			}
		}
		fmt.Fprintf(&b, "\n// %s launches %s.\nfunc %s(be Backend, grid, block Dim3, %s) error {\n\treturn be.Launch(&Kernels[%d], grid, block, []uint64{%s})\n}\n",
			goName(k.name), k.name, goName(k.name), strings.Join(ps, ", "), i, strings.Join(args, ", "))
	}
	return format.Source(b.Bytes())
}

func renderC(ks []kernel) []byte {
	var b bytes.Buffer
	b.WriteString("// Code generated by compute/gpu/kernels/gen from compute/gpu/kernels/*.cu; DO NOT EDIT.\n\n")
	b.WriteString("#include <stdint.h>\n#include <string.h>\n\n#include \"compat.cuh\"\n\n")
	for _, k := range ks {
		decls := make([]string, len(k.params))
		for j, p := range k.params {
			decls[j] = p.decl
		}
		fmt.Fprintf(&b, "void %s(%s);\n", k.name, strings.Join(decls, ", "))
	}
	b.WriteString("\nstatic double u2d(unsigned long long u) {\n\tdouble d;\n\tmemcpy(&d, &u, sizeof d);\n\treturn d;\n}\n\n")
	b.WriteString("void emu_dispatch(int kernel, const unsigned long long *a) {\n\tswitch (kernel) {\n")
	for i, k := range ks {
		args := make([]string, len(k.params))
		for j, p := range k.params {
			switch p.kind {
			case 'p':
				args[j] = fmt.Sprintf("(void *)(uintptr_t)a[%d]", j)
			case 'l':
				args[j] = fmt.Sprintf("(long)a[%d]", j)
			case 'u':
				args[j] = fmt.Sprintf("a[%d]", j)
			case 'd':
				args[j] = fmt.Sprintf("u2d(a[%d])", j)
			}
		}
		fmt.Fprintf(&b, "\tcase %d:\n\t\t%s(%s);\n\t\treturn;\n", i, k.name, strings.Join(args, ", "))
	}
	b.WriteString("\t}\n}\n")
	return b.Bytes()
}
