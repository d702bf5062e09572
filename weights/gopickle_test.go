package weights

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/nlpodyssey/gopickle/pickle"
	"github.com/nlpodyssey/gopickle/pytorch"
)

// TestGopickleUnsafe records why the checkpoints are not read with
// github.com/nlpodyssey/gopickle (v0.3.0, already in the module graph through
// npyio): on inputs a hostile or damaged file can hold, it panics where our
// reader returns an error (or, for a LONG1 of zero bytes, which Python reads
// as 0, the value). If gopickle stops panicking here, revisit the decision in
// doc.go.
func TestGopickleUnsafe(t *testing.T) {
	panics := func(f func()) (msg string) {
		defer func() {
			if r := recover(); r != nil {
				msg = fmt.Sprint(r)
			}
		}()
		f()
		return ""
	}
	for _, c := range []struct {
		what   string
		pickle string
		ours   func(v any, err error) bool
	}{
		{"LONG1 of zero bytes", "\x80\x02\x8a\x00.", func(v any, err error) bool { return err == nil && v == int64(0) }},
		{"FRAME of 2^62 bytes", "\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x40.", func(v any, err error) bool { return err != nil }},
		{"BINBYTES8 of 2^62 bytes", "\x80\x04\x8e\x00\x00\x00\x00\x00\x00\x00\x40.", func(v any, err error) bool { return err != nil }},
	} {
		msg := panics(func() { pickle.Loads(c.pickle) })
		if msg == "" {
			t.Errorf("%s: gopickle no longer panics", c.what)
		} else {
			t.Logf("%s: gopickle panics: %s", c.what, msg)
		}
		u := &unpickler{buf: []byte(c.pickle)}
		v, err := u.load()
		if !c.ours(v, err) {
			t.Errorf("%s: ours gives %v, %v", c.what, v, err)
		}
	}

	// Its PyTorch loader panics on the tar format of torch < 0.4; Open says it does not read it.
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: "sys_info", Size: 1, Mode: 0o644})
	tw.Write([]byte("x"))
	tw.Close()
	p := filepath.Join(t.TempDir(), "old.pt")
	if err := os.WriteFile(p, tb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if msg := panics(func() { pytorch.Load(p) }); msg == "" {
		t.Errorf("tar: gopickle's pytorch.Load no longer panics")
	} else {
		t.Logf("tar: gopickle's pytorch.Load panics: %s", msg)
	}
	if _, err := Open(p); err == nil {
		t.Error("Open read a tar file")
	}
}
