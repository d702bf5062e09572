// Package limitread reads small files without trusting their size: a file larger than
// expected is an error, not an allocation.
package limitread

import (
	"fmt"
	"io"
	"os"

	"github.com/ddpm-studio/ddpm-studio/internal/bytesize"
)

// File reads the file at path, which must hold at most limit bytes.
func File(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %s, more than such a file ever holds", path, bytesize.Format(limit))
	}
	return b, nil
}
