package dataset

import (
	"cmp"
	"errors"
	"fmt"
	"image"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/ddpm-studio/ddpm-studio/imgio"
)

// LoadFolder loads every image below dir, recursively, in lexical order of
// their paths. Files are recognised by content, not by name, in any format
// imgio registers (PNG, JPEG, GIF, BMP, TIFF, WebP). Files and folders whose
// names start with a dot are ignored, as are symbolic links to folders;
// symbolic links to files are followed.
//
// Each image is centre-cropped to a square, resized to opt.Size×opt.Size and
// composited over white, as by imgio.Square, then converted to gray or RGB
// (see Options.Channels). Files that cannot be read or decoded are listed in
// Skipped and do not stop loading. Decoding runs on runtime.NumCPU()
// goroutines; the result does not depend on their timing.
//
// It is an error if dir is not a readable folder or holds no usable image.
func LoadFolder(dir string, opt Options) (*Dataset, error) {
	if err := opt.check(); err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	files, skipped, err := listFiles(dir)
	if err != nil {
		return nil, fmt.Errorf("load dataset: %w", err)
	}
	return loadList(dir, files, skipped, opt)
}

// LoadFiles loads the given image files (a set dropped on the window, say) as LoadFolder
// loads a folder's. Source is their common folder and Files are relative to it.
func LoadFiles(paths []string, opt Options) (*Dataset, error) {
	if err := opt.check(); err != nil {
		return nil, fmt.Errorf("load files: %w", err)
	}
	if len(paths) == 0 {
		return nil, errors.New("load files: no files given")
	}
	abs := make([]string, len(paths))
	for i, p := range paths {
		a, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", p, err)
		}
		abs[i] = a
	}
	base := filepath.Dir(abs[0])
	for _, a := range abs[1:] {
		for !strings.HasPrefix(a, base+string(filepath.Separator)) && base != filepath.Dir(base) {
			base = filepath.Dir(base)
		}
	}
	files := make([]string, len(abs))
	for i, a := range abs {
		rel, err := filepath.Rel(base, a)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", a, err)
		}
		files[i] = rel
	}
	slices.Sort(files)
	files = slices.Compact(files)
	return loadList(base, files, nil, opt)
}

// loadList loads files (relative to dir), adding the ones it cannot use to skipped.
func loadList(dir string, files []string, skipped []Skip, opt Options) (*Dataset, error) {
	planes := opt.Channels
	if planes == 0 {
		planes = 3 // until every image has been seen
	}
	results := make([]result, len(files))
	parallel(len(files), opt.Progress, func(i int) {
		results[i] = loadFile(filepath.Join(dir, files[i]), opt.Size, planes)
	})

	d := &Dataset{C: opt.Channels, H: opt.Size, W: opt.Size, Source: dir, Skipped: skipped}
	gray := true
	for i, r := range results {
		if r.pix == nil {
			d.Skipped = append(d.Skipped, Skip{Path: files[i], Reason: r.reason})
			continue
		}
		d.Files = append(d.Files, files[i])
		gray = gray && r.gray
	}
	slices.SortFunc(d.Skipped, func(a, b Skip) int { return cmp.Compare(a.Path, b.Path) })
	d.N = len(d.Files)
	if d.N == 0 {
		if len(d.Skipped) == 0 {
			return nil, fmt.Errorf("no usable images in %s (no files found)", dir)
		}
		return nil, fmt.Errorf("no usable images in %s (%s)", dir, skippedSummary(d.Skipped, 3))
	}
	if d.C == 0 {
		d.C = 3
		if gray {
			d.C = 1
		}
	}

	// For gray images the red plane holds the gray values.
	size := d.C * d.H * d.W
	d.Pixels = make([]uint8, 0, d.N*size)
	for i := range results {
		if results[i].pix != nil {
			d.Pixels = append(d.Pixels, results[i].pix[:size]...)
			results[i].pix = nil // let the collector reclaim it early
		}
	}
	return d, nil
}

// listFiles returns the paths, relative to dir, of the candidate files below
// dir in lexical order, and the entries it had to skip.
func listFiles(dir string) (files []string, skipped []Skip, err error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, nil, err
	}
	if !info.IsDir() {
		return nil, nil, fmt.Errorf("%s is not a folder", dir)
	}
	// WalkDir does not follow a root that is a symbolic link.
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, nil, err
	}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if path == root {
			return err
		}
		rel, relErr := filepath.Rel(root, path)
		if relErr != nil {
			return relErr
		}
		switch {
		case strings.HasPrefix(d.Name(), "."):
			if d.IsDir() {
				return fs.SkipDir
			}
		case err != nil:
			skipped = append(skipped, Skip{Path: rel, Reason: "unreadable folder: " + plain(err)})
		case d.Type().IsRegular():
			files = append(files, rel)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Stat(path)
			switch {
			case err != nil:
				skipped = append(skipped, Skip{Path: rel, Reason: "broken link: " + plain(err)})
			case target.Mode().IsRegular():
				files = append(files, rel)
			case target.IsDir():
				skipped = append(skipped, Skip{Path: rel, Reason: "link to a folder (not followed)"})
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	slices.Sort(files)
	return files, skipped, nil
}

// result is the outcome of loading one file: its pixels and whether it is
// gray, or the reason it was skipped.
type result struct {
	pix    []uint8
	gray   bool
	reason string
}

// loadFile decodes the image file at path and returns it as a size×size
// square in planes (1 or 3) planes, as by imgio.Square and imgio.Planes.
func loadFile(path string, size, planes int) (res result) {
	// A decoder bug triggered by one malformed file must not end the program.
	defer func() {
		if r := recover(); r != nil {
			res = result{reason: fmt.Sprintf("decoder failed: %v", r)}
		}
	}()
	f, err := os.Open(path)
	if err != nil {
		return result{reason: "unreadable: " + plain(err)}
	}
	defer f.Close()
	img, err := imgio.Decode(f)
	if errors.Is(err, image.ErrFormat) {
		return result{reason: "not an image"}
	}
	if err != nil {
		return result{reason: err.Error()}
	}
	m := imgio.Square(img, size)
	pix := make([]uint8, planes*size*size)
	imgio.Planes(pix, m, planes)
	return result{pix: pix, gray: imgio.IsGray(m)}
}

// plain returns the message of err without the path that a *fs.PathError
// adds, for reasons shown next to the path anyway.
func plain(err error) string {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

// parallel calls fn(i) for every i in [0, n) on up to runtime.NumCPU()
// goroutines and, if progress is not nil, reports each completion from the
// calling goroutine.
func parallel(n int, progress func(done, total int), fn func(i int)) {
	next := make(chan int)
	finished := make(chan struct{})
	var wg sync.WaitGroup
	for range min(runtime.NumCPU(), n) {
		wg.Go(func() {
			for i := range next {
				fn(i)
				finished <- struct{}{}
			}
		})
	}
	go func() {
		for i := range n {
			next <- i
		}
		close(next)
		wg.Wait()
		close(finished)
	}()
	done := 0
	for range finished {
		done++
		if progress != nil {
			progress(done, n)
		}
	}
}
