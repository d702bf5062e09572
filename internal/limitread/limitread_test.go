package limitread

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	os.WriteFile(path, []byte("12345"), 0o644)
	if b, err := File(path, 5); err != nil || string(b) != "12345" {
		t.Errorf("limit 5: %q, %v", b, err)
	}
	if _, err := File(path, 4); err == nil || !strings.Contains(err.Error(), "larger than 4 bytes") {
		t.Errorf("limit 4: %v", err)
	}
}
