package weights

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// Reading PyTorch checkpoints (torch.save) without running Python: the zip
// format of torch ≥ 1.6 (ARCHIVE/data.pkl, ARCHIVE/data/KEY, ARCHIVE/version)
// and the legacy stream of torch < 1.6 (magic number, protocol version,
// system info, the object, the storage keys, then each storage as an int64
// element count and its bytes).

// maxPickle bounds the pickle part of a checkpoint (a state dict's is tens of KiB).
const maxPickle = 16 << 20

// legacyMagic is the start of a legacy checkpoint: PROTO 2, then LONG1 of 10
// bytes holding torch's magic number 0x1950a86a20f9469cfc6c.
var legacyMagic = []byte{0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19}

const legacyProtocolVersion = 1001

// pathTensor is a tensor of a checkpoint with its path: the dict keys that lead
// to it, joined with dots (a plain state dict's keys are the paths).
type pathTensor struct {
	path string
	meta *tensorMeta
}

var storageKey = regexp.MustCompile(`^[A-Za-z0-9_]{1,64}$`)

// readTorchZip reads the tensors of a torch ≥ 1.6 checkpoint.
func readTorchZip(ra io.ReaderAt, size int64) ([]pathTensor, error) {
	zr, err := zip.NewReader(ra, size)
	if err != nil {
		return nil, fmt.Errorf("not a readable zip archive (truncated or damaged?): %w", err)
	}
	records := make(map[string]*zip.File, len(zr.File))
	var pkl *zip.File
	for _, f := range zr.File {
		records[f.Name] = f
		dir, base := path.Split(f.Name)
		if base == "constants.pkl" || strings.Contains(f.Name, "/code/") {
			return nil, errors.New("a TorchScript archive (torch.jit.save), not a state dict: " +
				"in Python, save the model's weights with torch.save(model.state_dict(), path)")
		}
		if base == "data.pkl" && strings.Count(dir, "/") == 1 {
			if pkl != nil {
				return nil, fmt.Errorf("zip archive holds two pickles (%s, %s)", pkl.Name, f.Name)
			}
			pkl = f
		}
	}
	if pkl == nil {
		return nil, errors.New("zip archive without ARCHIVE/data.pkl: not a PyTorch checkpoint")
	}
	prefix, _ := path.Split(pkl.Name)
	if bo := records[prefix+"byteorder"]; bo != nil {
		b, err := readRecord(bo, 16)
		if err != nil {
			return nil, err
		}
		if s := strings.TrimSpace(string(b)); s != "little" {
			return nil, fmt.Errorf("byte order %q: only little-endian checkpoints are read", s)
		}
	}
	buf, err := readRecord(pkl, maxPickle)
	if err != nil {
		return nil, err
	}
	storages := map[string]*storageRef{}
	u := &unpickler{buf: buf}
	u.persistent = func(pid pyTuple) (any, error) {
		if len(pid) != 5 {
			return nil, fmt.Errorf("storage id %s has %d fields, want 5", describeValue(pid), len(pid))
		}
		dt, key, loc, numel, err := storageID(pid)
		if err != nil {
			return nil, err
		}
		if s, ok := storages[key]; ok {
			if s.dtype != dt || s.numel != numel {
				return nil, fmt.Errorf("storage %q is declared twice, differently", key)
			}
			return s, nil
		}
		rec := records[prefix+"data/"+key]
		if rec == nil {
			return nil, fmt.Errorf("storage %q has no record %sdata/%s", key, prefix, key)
		}
		need := uint64(numel) * uint64(dt.size())
		if rec.UncompressedSize64 < need {
			return nil, fmt.Errorf("record %s holds %d bytes; its storage of %d %s values needs %d",
				rec.Name, rec.UncompressedSize64, numel, dt, need)
		}
		// torch.save stores records uncompressed; then their bytes must lie in the file.
		if rec.Method != zip.Store {
			return nil, fmt.Errorf("record %s is compressed, which torch.save never does (re-zipped? unzip it and save it again with torch.save)", rec.Name)
		}
		if start, err := rec.DataOffset(); err != nil || start < 0 || rec.CompressedSize64 != rec.UncompressedSize64 ||
			uint64(start)+rec.CompressedSize64 > uint64(size) {
			return nil, fmt.Errorf("record %s runs past the end of the file (truncated?)", rec.Name)
		}
		s := &storageRef{dtype: dt, key: key, location: loc, numel: numel}
		s.read = func(off int64, dst []byte) error { return readZipRange(ra, size, rec, off, dst) }
		storages[key] = s
		return s, nil
	}
	obj, err := u.load()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pkl.Name, err)
	}
	return collectTensors(obj)
}

// storageID checks the fields ('storage', type, key, location, numel) common to both formats.
func storageID(pid pyTuple) (dt dtype, key, loc string, numel int64, err error) {
	g, ok := pid[1].(pyGlobal)
	if !ok || g.module != "torch" {
		return 0, "", "", 0, fmt.Errorf("storage type %s", describeValue(pid[1]))
	}
	dt, ok = storageTypes[g.name]
	if !ok {
		return 0, "", "", 0, fmt.Errorf("storage type torch.%s", g.name)
	}
	key, ok1 := pid[2].(string)
	loc, ok2 := pid[3].(string)
	numel, ok3 := pid[4].(int64)
	if !ok1 || !ok2 || !ok3 || !storageKey.MatchString(key) || numel < 0 || numel > maxNumel {
		return 0, "", "", 0, fmt.Errorf("storage id %s: want (key, location, element count)", describeValue(pid))
	}
	return dt, key, loc, numel, nil
}

// readRecord reads a whole zip record of at most limit bytes.
func readRecord(f *zip.File, limit int64) ([]byte, error) {
	if f.UncompressedSize64 > uint64(limit) {
		return nil, fmt.Errorf("record %s is %d bytes, more than the %d a checkpoint's pickle may have",
			f.Name, f.UncompressedSize64, limit)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("record %s: %w", f.Name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("record %s (truncated or damaged?): %w", f.Name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("record %s is longer than %d bytes", f.Name, limit)
	}
	return b, nil
}

// readZipRange reads len(dst) bytes of a stored record from byte off on; a
// read of the whole record is checked against its CRC-32.
func readZipRange(ra io.ReaderAt, size int64, rec *zip.File, off int64, dst []byte) error {
	if off < 0 || uint64(off)+uint64(len(dst)) > rec.UncompressedSize64 {
		return fmt.Errorf("bytes %d..%d lie outside record %s (%d bytes)", off, off+int64(len(dst)), rec.Name, rec.UncompressedSize64)
	}
	start, err := rec.DataOffset()
	if err != nil {
		return fmt.Errorf("record %s: %w", rec.Name, err)
	}
	if n, err := ra.ReadAt(dst, start+off); n < len(dst) {
		return fmt.Errorf("record %s (truncated?): %w", rec.Name, err)
	}
	if off == 0 && uint64(len(dst)) == rec.UncompressedSize64 && crc32.ChecksumIEEE(dst) != rec.CRC32 {
		return fmt.Errorf("record %s is damaged (its CRC-32 does not match)", rec.Name)
	}
	return nil
}

// isLegacyTorch reports whether head starts like a checkpoint of torch < 1.6.
func isLegacyTorch(head []byte) bool { return bytes.HasPrefix(head, legacyMagic) }

// isTar reports a POSIX tar header (the format of torch < 0.4).
func isTar(head []byte) bool {
	return len(head) >= 262 && string(head[257:262]) == "ustar"
}

// readTorchLegacy reads the tensors of a checkpoint saved by torch < 1.6
// (or with _use_new_zipfile_serialization=False).
func readTorchLegacy(ra io.ReaderAt, size int64) ([]pathTensor, error) {
	buf := make([]byte, min(size, maxPickle))
	if n, err := ra.ReadAt(buf, 0); n < len(buf) {
		return nil, err
	}
	u := &unpickler{buf: buf}
	next := func(what string) (any, error) {
		u.memo = nil // every pickle of the stream has its own memo
		v, err := u.load()
		if err != nil {
			if u.pos >= len(buf) && len(buf) == maxPickle {
				return nil, fmt.Errorf("%s: the pickles are longer than %d bytes", what, maxPickle)
			}
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		return v, nil
	}
	magic, err := next("magic number")
	if err != nil {
		return nil, err
	}
	if b, ok := magic.(pyBigInt); !ok || !bytes.Equal(b, legacyMagic[4:]) {
		return nil, errors.New("not a PyTorch checkpoint (wrong magic number)")
	}
	ver, err := next("protocol version")
	if err != nil {
		return nil, err
	}
	if ver != int64(legacyProtocolVersion) {
		return nil, fmt.Errorf("legacy checkpoint protocol %s (only %d exists)", describeValue(ver), legacyProtocolVersion)
	}
	sys, err := next("system info")
	if err != nil {
		return nil, err
	}
	if d, ok := sys.(*pyDict); ok {
		if le, ok := d.get("little_endian"); ok && le != true {
			return nil, errors.New("saved on a big-endian machine: only little-endian checkpoints are read")
		}
	}
	storages := map[string]*storageRef{}
	u.persistent = func(pid pyTuple) (any, error) {
		if len(pid) != 6 {
			return nil, fmt.Errorf("storage id %s has %d fields, want 6", describeValue(pid), len(pid))
		}
		dt, key, loc, numel, err := storageID(pid[:5])
		if err != nil {
			return nil, err
		}
		if pid[5] != nil {
			return nil, fmt.Errorf("storage %q is a view of another storage (not read; save with torch ≥ 1.6)", key)
		}
		if s, ok := storages[key]; ok {
			if s.dtype != dt || s.numel != numel {
				return nil, fmt.Errorf("storage %q is declared twice, differently", key)
			}
			return s, nil
		}
		s := &storageRef{dtype: dt, key: key, location: loc, numel: numel}
		storages[key] = s
		return s, nil
	}
	obj, err := next("object")
	if err != nil {
		return nil, err
	}
	u.persistent = nil
	keysV, err := next("storage keys")
	if err != nil {
		return nil, err
	}
	keys, ok := keysV.(*pyList)
	if !ok {
		return nil, fmt.Errorf("storage keys are a %s, not a list", pyType(keysV))
	}
	pos := int64(u.pos)
	seen := map[string]bool{}
	for _, k := range keys.items {
		key, ok := k.(string)
		s := storages[key]
		if !ok || s == nil || seen[key] {
			return nil, fmt.Errorf("storage key %s is not a storage of the object", describeValue(k))
		}
		seen[key] = true
		var hdr [8]byte
		if n, _ := ra.ReadAt(hdr[:], pos); n < 8 {
			return nil, fmt.Errorf("storage %q: file ends at byte %d (truncated?)", key, size)
		}
		if n := int64(binary.LittleEndian.Uint64(hdr[:])); n != s.numel {
			return nil, fmt.Errorf("storage %q holds %d elements in the file, %d in its pickle", key, n, s.numel)
		}
		start := pos + 8
		nbytes := s.numel * int64(s.dtype.size())
		if nbytes > size-start {
			return nil, fmt.Errorf("storage %q: %d bytes at byte %d run past the end of the file (%d bytes; truncated?)",
				key, nbytes, start, size)
		}
		s.read = func(off int64, dst []byte) error {
			if off < 0 || off+int64(len(dst)) > nbytes {
				return fmt.Errorf("bytes %d..%d lie outside storage %q", off, off+int64(len(dst)), key)
			}
			if n, err := ra.ReadAt(dst, start+off); n < len(dst) {
				return fmt.Errorf("storage %q (truncated?): %w", key, err)
			}
			return nil
		}
		pos = start + nbytes
	}
	for key, s := range storages {
		if s.read == nil {
			return nil, fmt.Errorf("storage %q is missing from the storage list", key)
		}
	}
	return collectTensors(obj)
}

// Bounds on how collectTensors looks into nested dicts, lists and tuples.
const (
	maxDepth     = 12
	maxPathBytes = 64 << 20 // the key paths made, in all
)

// collectTensors lists the tensors of a loaded pickle with their key paths.
// Each dict, list and tuple is entered once (a pickle can make a dict that
// holds itself, or tuples that repeat one tuple, through its memo).
func collectTensors(obj any) ([]pathTensor, error) {
	var out []pathTensor
	pathBytes := 0
	seen := map[any]bool{}
	type tupleID struct {
		first *any
		n     int
	}
	var walk func(v any, path string, depth int) error
	walk = func(v any, path string, depth int) error {
		var keys []string
		var vals []any
		switch v := v.(type) {
		case *tensorMeta:
			out = append(out, pathTensor{path, v})
			return nil
		case *pyDict:
			if seen[v] {
				return nil
			}
			seen[v] = true
			vals = v.vals
			keys = make([]string, len(v.keys))
			for i, k := range v.keys {
				switch k := k.(type) {
				case string:
					keys[i] = k
				case int64:
					keys[i] = strconv.FormatInt(k, 10)
				}
			}
		case *pyList:
			if seen[v] {
				return nil
			}
			seen[v] = true
			vals = v.items
		case pyTuple:
			if len(v) == 0 {
				return nil
			}
			id := tupleID{&v[0], len(v)}
			if seen[id] {
				return nil
			}
			seen[id] = true
			vals = v
		default:
			return nil
		}
		if depth >= maxDepth {
			return nil
		}
		for i, x := range vals {
			switch x.(type) {
			case *tensorMeta, *pyDict, *pyList, pyTuple:
			default:
				continue // no path for what holds no tensor
			}
			k := strconv.Itoa(i)
			if keys != nil {
				k = keys[i]
			}
			p := k
			if path != "" {
				p = path + "." + k
			}
			if pathBytes += len(p); pathBytes > maxPathBytes {
				return fmt.Errorf("the pickle's keys are longer than %d bytes in all (not a state dict)", maxPathBytes)
			}
			if err := walk(x, p, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	err := walk(obj, "", 0)
	return out, err
}
