package imgio

import (
	"bytes"
	"encoding/binary"
	"image"
	"io"
)

// EXIF orientation is read here rather than with an EXIF library because the ones available
// fail on hostile input in ways a loader cannot contain: github.com/rwcarlsen/goexif
// (2019) allocates from a tag's count before checking it against the data (a 36-byte block
// ends the program out of memory) and follows a two-IFD cycle forever; in
// github.com/dsoprea/go-exif/v3 v3.0.1 a 64 KB block of 5,000 chained IFDs takes 4.5 s,
// and no visitor is called in between to stop it. Orientation needs one tag of the first
// IFD, which is all that is read: no IFD chain is followed and no sub-IFD entered, so the
// work is bounded by the 65,535 entries an IFD can have.

// orientationTag is the TIFF/EXIF Orientation tag (TIFF 6.0, section 8; EXIF 2.32, 4.6.4).
const orientationTag = 0x0112

// maxJPEGSegments bounds the markers jpegOrientation reads before giving up.
const maxJPEGSegments = 256

// jpegOrientation returns the orientation in the EXIF APP1 segment of the JPEG file r of
// size bytes, or 1 when there is none or it cannot be read. It reads only the markers
// before the image data (SOS), skipping their payloads, and at most maxJPEGSegments.
func jpegOrientation(r io.ReaderAt, size int64) int {
	var buf [4]byte
	if _, err := r.ReadAt(buf[:2], 0); err != nil || buf[0] != 0xff || buf[1] != 0xd8 {
		return 1
	}
	pos := int64(2)
	for range maxJPEGSegments {
		if _, err := r.ReadAt(buf[:2], pos); err != nil || buf[0] != 0xff {
			return 1
		}
		marker := buf[1]
		switch {
		case marker == 0xff: // fill byte before a marker
			pos++
			continue
		case marker == 0xd8 || marker == 0x01 || (marker >= 0xd0 && marker <= 0xd7):
			pos += 2 // markers without a payload
			continue
		case marker == 0xda || marker == 0xd9: // start of scan, end of image
			return 1
		}
		if _, err := r.ReadAt(buf[2:4], pos+2); err != nil {
			return 1
		}
		n := int64(binary.BigEndian.Uint16(buf[2:4])) // payload and its 2-byte length
		if n < 2 || pos+2+n > size {
			return 1
		}
		if marker == 0xe1 && n >= 2+6+8 {
			payload := make([]byte, n-2)
			if _, err := r.ReadAt(payload, pos+4); err != nil {
				return 1
			}
			if tiff, ok := bytes.CutPrefix(payload, []byte("Exif\x00\x00")); ok {
				return tiffOrientation(bytes.NewReader(tiff))
			}
		}
		pos += 2 + n
	}
	return 1
}

// tiffOrientation returns the Orientation tag of the first IFD of the TIFF structure r
// (a TIFF file, or the body of an EXIF block), or 1 when it is absent, malformed or out of
// range. The tag must be a single SHORT, as TIFF 6.0 defines it.
func tiffOrientation(r io.ReaderAt) int {
	var hdr [8]byte
	if _, err := r.ReadAt(hdr[:], 0); err != nil {
		return 1
	}
	var order binary.ByteOrder
	switch string(hdr[:4]) {
	case "II*\x00":
		order = binary.LittleEndian
	case "MM\x00*":
		order = binary.BigEndian
	default:
		return 1
	}
	ifd := int64(order.Uint32(hdr[4:]))
	var count [2]byte
	if ifd < 8 {
		return 1
	}
	if _, err := r.ReadAt(count[:], ifd); err != nil {
		return 1
	}
	// All entries in one read: at most 65,535 × 12 bytes.
	entries := make([]byte, 12*int(order.Uint16(count[:])))
	n, _ := r.ReadAt(entries, ifd+2)
	for e := entries[:n-n%12]; len(e) > 0; e = e[12:] {
		if order.Uint16(e[0:]) != orientationTag {
			continue
		}
		const short = 3
		if order.Uint16(e[2:]) != short || order.Uint32(e[4:]) != 1 {
			return 1
		}
		if o := int(order.Uint16(e[8:])); o >= 1 && o <= 8 {
			return o
		}
		return 1
	}
	return 1
}

// storedPoint returns the point of a w×h stored image that shows at (x, y) once EXIF
// orientation o is applied (TIFF 6.0: for 6, "the 0th row represents the visual right-hand
// side of the image, and the 0th column represents the visual top").
func storedPoint(x, y, w, h, o int) (int, int) {
	switch o {
	case 2: // mirrored left to right
		return w - 1 - x, y
	case 3: // turned 180°
		return w - 1 - x, h - 1 - y
	case 4: // mirrored top to bottom
		return x, h - 1 - y
	case 5: // transposed
		return y, x
	case 6: // stored turned 90° anticlockwise: shown turned clockwise
		return y, h - 1 - x
	case 7: // transversed
		return w - 1 - y, h - 1 - x
	case 8: // stored turned 90° clockwise
		return w - 1 - y, x
	}
	return x, y
}

// storedRect returns the rectangle of a w×h stored image that shows as r once orientation o
// is applied; r is in the coordinates of the image as shown.
func storedRect(r image.Rectangle, w, h, o int) image.Rectangle {
	x0, y0 := storedPoint(r.Min.X, r.Min.Y, w, h, o)
	x1, y1 := storedPoint(r.Max.X-1, r.Max.Y-1, w, h, o)
	return image.Rect(min(x0, x1), min(y0, y1), max(x0, x1)+1, max(y0, y1)+1)
}

// orientSquare returns the square m as shown with orientation o.
func orientSquare(m *image.RGBA, o int) *image.RGBA {
	if o < 2 || o > 8 {
		return m
	}
	n := m.Bounds().Dx()
	out := image.NewRGBA(image.Rect(0, 0, n, n))
	for y := range n {
		row := out.Pix[y*out.Stride:]
		for x := range n {
			sx, sy := storedPoint(x, y, n, n, o)
			copy(row[4*x:4*x+4], m.Pix[m.PixOffset(m.Rect.Min.X+sx, m.Rect.Min.Y+sy):])
		}
	}
	return out
}

// squareOriented crops img (stored with EXIF orientation o) to the largest centred square
// of the image as shown, resizes it to size×size as Square does, and returns it as shown.
// Flips and quarter turns commute with the resizing, whose kernel is symmetric, so only the
// size×size result is turned.
func squareOriented(img image.Image, size, o int) *image.RGBA {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	shownW, shownH := w, h
	if o >= 5 && o <= 8 {
		shownW, shownH = h, w
	}
	side := min(w, h)
	x0, y0 := (shownW-side)/2, (shownH-side)/2
	crop := storedRect(image.Rect(x0, y0, x0+side, y0+side), w, h, o).Add(b.Min)
	return orientSquare(squareCrop(img, crop, size), o)
}
