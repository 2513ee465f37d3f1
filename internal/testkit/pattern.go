package testkit

import (
	"crypto/sha256"
	"io"
)

// PatternReader is a seekable stream of Size deterministic bytes that holds none of them in memory:
// a large upload body for tests of streaming reads (the SDK seeks it to sign and to retry).
type PatternReader struct {
	// Size is the stream's length.
	Size int64
	off  int64
}

// Read implements io.Reader.
func (r *PatternReader) Read(p []byte) (int, error) {
	if r.off >= r.Size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), r.Size-r.off))
	for i := range n {
		p[i] = byte((uint64(r.off+int64(i)) * 0x9E3779B97F4A7C15) >> 56)
	}
	r.off += int64(n)
	return n, nil
}

// Seek implements io.Seeker.
func (r *PatternReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		r.off = offset
	case io.SeekCurrent:
		r.off += offset
	case io.SeekEnd:
		r.off = r.Size + offset
	}
	return r.off, nil
}

// PatternSHA256 is the SHA-256 of the size bytes of a PatternReader.
func PatternSHA256(size int64) []byte {
	h := sha256.New()
	_, _ = io.Copy(h, &PatternReader{Size: size}) // never fails
	return h.Sum(nil)
}
