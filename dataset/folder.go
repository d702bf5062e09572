package dataset

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"image"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/sync/semaphore"

	"github.com/ddpm-studio/ddpm-studio/imgio"
	"github.com/ddpm-studio/ddpm-studio/internal/bytesize"
)

// LoadFolder loads every image below dir, recursively, in lexical order of
// their paths. Files are recognised by content, not by name, in any format
// imgio registers (PNG, JPEG, GIF, BMP, TIFF, WebP). Files and folders whose
// names start with a dot are ignored, as are symbolic links to folders;
// symbolic links to files are followed.
//
// Each image is turned upright as its EXIF orientation says, centre-cropped to
// a square, resized to opt.Size×opt.Size and composited over white, as by
// imgio.File.Square, then converted to gray or RGB (see Options.Channels).
// Files that cannot be read or decoded, or exceed imgio's limits on file size
// and pixels, are listed in Skipped and do not stop loading. It refuses a
// dataset larger than the memory available, saying what size would fit.
// Decoding runs on runtime.NumCPU() goroutines, fewer where decoding large
// images at once would not fit in memory; the result does not depend on their
// timing. Loading stops soon after ctx is done, with an error wrapping
// ctx.Err().
//
// It is an error if dir is not a readable folder or holds no usable image.
func LoadFolder(ctx context.Context, dir string, opt Options) (*Dataset, error) {
	if err := opt.check(); err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	files, skipped, err := listFiles(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("load dataset: %w", err)
	}
	return loadList(ctx, dir, files, skipped, opt)
}

// LoadFiles loads the given image files (a set dropped on the window, say) as LoadFolder
// loads a folder's. Source is their common folder and Files are relative to it.
func LoadFiles(ctx context.Context, paths []string, opt Options) (*Dataset, error) {
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
	return loadList(ctx, base, files, nil, opt)
}

// unknownMemoryBudget is the memory decodes at once may use where the memory
// available is unknown.
const unknownMemoryBudget = 4 << 30

// decodeBudget returns the memory the decodes running at once may use: what
// is available beyond 10% and the dataset's need bytes, and at least 256 MiB.
func decodeBudget(avail, need int64) int64 {
	if avail <= 0 {
		return unknownMemoryBudget
	}
	return max(avail/10*9-need, 256<<20)
}

// loadList loads files (relative to dir), adding the ones it cannot use to skipped.
// It reads every file's header first, so as to size the dataset by the images
// there are, then decodes them into it.
func loadList(ctx context.Context, dir string, files []string, skipped []Skip, opt Options) (*Dataset, error) {
	reasons := make([]string, len(files))
	err := parallel(ctx, len(files), nil, func(i int) {
		f, err := imgio.Open(ctx, filepath.Join(dir, files[i]))
		if err != nil {
			reasons[i] = reason(err)
			return
		}
		f.Close()
	})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	var use []string
	for i, r := range reasons {
		if r != "" {
			skipped = append(skipped, Skip{Path: files[i], Reason: r})
			continue
		}
		use = append(use, files[i])
	}

	planes := opt.Channels
	if planes == 0 {
		planes = 3 // until every image has been seen
	}
	n, size := len(use), opt.Size
	slot := planes * size * size
	need := int64(n) * int64(slot)
	if opt.Channels == 0 {
		need += int64(n) * int64(size*size) // the copy to one plane if all are gray
	}
	avail := available()
	what := fmt.Sprintf("a dataset of %d images", n)
	if n == 1 {
		what = "a dataset of 1 image"
	}
	if err := checkFits(what, planes, size, need, avail); err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	budget := decodeBudget(avail, need)
	sem := semaphore.NewWeighted(budget)
	pix := make([]uint8, n*slot)
	results := make([]result, n)
	err = parallel(ctx, n, opt.Progress, func(i int) {
		results[i] = loadFile(ctx, filepath.Join(dir, use[i]), size, pix[i*slot:(i+1)*slot], sem, budget)
	})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}

	d := &Dataset{C: opt.Channels, H: size, W: size, Source: dir}
	gray := true
	for i, r := range results {
		if r.reason != "" {
			skipped = append(skipped, Skip{Path: use[i], Reason: r.reason})
			continue
		}
		if k := len(d.Files); k != i {
			copy(pix[k*slot:(k+1)*slot], pix[i*slot:(i+1)*slot])
		}
		d.Files = append(d.Files, use[i])
		gray = gray && r.gray
	}
	slices.SortFunc(skipped, func(a, b Skip) int { return cmp.Compare(a.Path, b.Path) })
	d.Skipped = skipped
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
	if d.C == planes {
		d.Pixels = pix[:d.N*slot]
		return d, nil
	}
	// For gray images the red plane holds the gray values.
	plane := size * size
	d.Pixels = make([]uint8, d.N*plane)
	for i := range d.N {
		copy(d.Pixels[i*plane:(i+1)*plane], pix[i*slot:])
	}
	return d, nil
}

// listFiles returns the paths, relative to dir, of the candidate files below
// dir in lexical order, and the entries it had to skip.
func listFiles(ctx context.Context, dir string) (files []string, skipped []Skip, err error) {
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
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
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

// result is the outcome of loading one file: whether it is gray, or the
// reason it was skipped.
type result struct {
	gray   bool
	reason string
}

// loadFile decodes the image file at path into dst, as a size×size square in
// len(dst)/size² (1 or 3) planes, as by imgio.File.Square and imgio.Planes.
// The decode waits for its share of budget bytes in sem.
func loadFile(ctx context.Context, path string, size int, dst []uint8, sem *semaphore.Weighted, budget int64) (res result) {
	// A decoder bug triggered by one malformed file must not end the program.
	defer func() {
		if r := recover(); r != nil {
			res = result{reason: fmt.Sprintf("decoder failed: %v", r)}
		}
	}()
	f, err := imgio.Open(ctx, path)
	if err != nil {
		return result{reason: reason(err)}
	}
	defer f.Close()
	need := f.SquareBytes(size)
	if need > budget {
		return result{reason: fmt.Sprintf("decoding its %d×%d pixels needs about %s of memory, more than the %s there is room for",
			f.Width, f.Height, bytesize.Format(need), bytesize.Format(budget))}
	}
	if err := sem.Acquire(ctx, need); err != nil {
		return result{reason: reason(err)}
	}
	defer sem.Release(need)
	m, err := f.Square(size)
	if err != nil {
		return result{reason: reason(err)}
	}
	imgio.Planes(dst, m, len(dst)/(size*size))
	return result{gray: imgio.IsGray(m)}
}

// reason says in words why a file could not be used.
func reason(err error) string {
	switch {
	case errors.Is(err, image.ErrFormat):
		return "not an image"
	case errors.As(err, new(*fs.PathError)):
		return "unreadable: " + plain(err)
	}
	return err.Error()
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
// calling goroutine. Once ctx is done it starts no more calls and returns
// ctx.Err() at once, without waiting for the calls under way, which finish on
// their own.
func parallel(ctx context.Context, n int, progress func(done, total int), fn func(i int)) error {
	next := make(chan int)
	finished := make(chan struct{})
	for range min(runtime.NumCPU(), n) {
		go func() {
			for i := range next {
				fn(i)
				select {
				case finished <- struct{}{}:
				case <-ctx.Done():
				}
			}
		}()
	}
	go func() {
		defer close(next)
		for i := range n {
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	for done := 0; done < n; {
		select {
		case <-finished:
			done++
			if progress != nil {
				progress(done, n)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return ctx.Err()
}
