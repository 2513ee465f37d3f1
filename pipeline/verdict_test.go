package pipeline_test

import (
	"archive/zip"
	"bytes"
	"strings"
	"testing"

	"github.com/gabriel-vasile/mimetype"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/pipeline"
)

// docxPrefix is the start of a minimal DOCX (a ZIP whose first entry is [Content_Types].xml and
// which contains word/).
func docxPrefix(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, name := range []string{"[Content_Types].xml", "_rels/.rels", "word/document.xml"} {
		w, err := zw.Create(name)
		require.NoError(t, err)
		_, err = w.Write([]byte("<x/>"))
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

func plainZip(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create("a.txt")
	require.NoError(t, err)
	_, err = w.Write([]byte("a"))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

func TestSniffAgrees(t *testing.T) {
	t.Parallel()
	png := pngBytes(t, 1, 1)
	pdf := []byte("%PDF-1.4\n%âãÏÓ\n")
	html := []byte("<!DOCTYPE html><html><body>x</body></html>")
	text := []byte("just some words\n")
	binary := []byte{0x00, 0x9f, 0x13, 0x37, 0x00, 0xff, 0xfe, 0x01}
	tests := []struct {
		name     string
		content  []byte
		declared string
		want     bool
	}{
		{"same type", png, "image/png", true},
		{"type parameters and case ignored", png, "Image/PNG; q=1", true},
		{"alias", pdf, "application/x-pdf", true},
		{"png declared as pdf", png, "application/pdf", false},
		{"png declared as jpeg", png, "image/jpeg", false},
		{"text declared as png", text, "image/png", false},
		{"html declared as svg", html, "image/svg+xml", false},
		{"html declared as json", html, "application/json", false},
		{"unrecognised content declared as pdf", binary, "application/pdf", false},

		{"no claim: empty", png, "", true},
		{"no claim: octet-stream", html, "application/octet-stream", true},
		{"no claim: binary/octet-stream", binary, "binary/octet-stream", true},

		{"specific content, generic declared: docx as zip", docxPrefix(t), "application/zip", true},
		{"specific content, generic declared: html as text", html, "text/plain", true},
		{"generic content, specific declared: zip as docx", plainZip(t), "application/vnd.openxmlformats-officedocument.wordprocessingml.document", true},
		{"generic content, specific declared: text as csv", text, "text/csv", true},
		{"generic content, specific declared: text as json", text, "application/json", true},
		{"text as any text/*", text, "text/markdown", true},
		{"zip is not a pdf", plainZip(t), "application/pdf", false},

		{"unknown declared, unrecognised content", binary, "application/x-intake-custom", true},
		{"unknown declared, text content", text, "application/x-ndjson", true},
		{"unknown declared, recognised content", png, "application/x-intake-custom", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sniffed := mimetype.Detect(tc.content)
			require.Equal(t, tc.want, pipeline.SniffAgrees(sniffed, tc.declared), "sniffed %s, declared %s", sniffed, tc.declared)
		})
	}
	require.True(t, pipeline.SniffAgrees(nil, ""), "no claim needs no sniff")
	require.False(t, pipeline.SniffAgrees(nil, "image/png"))
}

// sniffAgreesByIs is SniffAgrees as it was written with mimetype's MIME.Is (which parses both types
// on every call): the reference TestSniffAgreesByName holds the name comparison to.
func sniffAgreesByIs(sniffed *mimetype.MIME, declared string) bool {
	declared = pipeline.MediaType(declared)
	for _, nc := range []string{"", "application/octet-stream", "binary/octet-stream"} {
		if declared == nc {
			return true
		}
	}
	if sniffed == nil {
		return false
	}
	isRoot := func(m *mimetype.MIME) bool { return m.Parent() == nil }
	for m := sniffed; m != nil && !isRoot(m); m = m.Parent() {
		if m.Is(declared) {
			return true
		}
	}
	generic := isRoot(sniffed) || sniffed.Is("text/plain")
	if sniffed.Is("text/plain") && strings.HasPrefix(declared, "text/") {
		return true
	}
	known := mimetype.Lookup(declared)
	if known == nil {
		return generic
	}
	if isRoot(sniffed) {
		return false
	}
	for m := known.Parent(); m != nil && !isRoot(m); m = m.Parent() {
		if sniffed.Is(m.String()) {
			return true
		}
	}
	return false
}

// TestSniffAgreesByName: comparing type names (aliases resolved first) decides as MIME.Is did, for
// every pair of sniffed content and declared type here, aliases and parameters included.
func TestSniffAgreesByName(t *testing.T) {
	t.Parallel()
	contents := [][]byte{
		pngBytes(t, 1, 1), []byte("%PDF-1.4\n%âãÏÓ\n"), []byte("<!DOCTYPE html><html><body>x</body></html>"),
		[]byte("just some words\n"), []byte(`{"a": [1, 2, "x"]}`), []byte("<?xml version=\"1.0\"?><a/>"),
		[]byte("a,b,c\n1,2,3\n"), []byte("PK\x03\x04\x14\x00\x00\x00\x08\x00"), []byte("ID3\x03\x00\x00\x00\x00\x00\x00"),
		[]byte("RIFF\x24\x00\x00\x00WAVEfmt "), []byte("BM\x3a\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00"),
		[]byte("GIF89a\x01\x00\x01\x00"), []byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00"), []byte("#!/bin/sh\necho hi\n"),
		{0x00, 0x01, 0x02, 0xfe, 0xff}, nil,
	}
	declared := []string{
		"", "application/octet-stream", "text/plain", "Text/Plain; charset=UTF-8", "text/csv", "text/html",
		"image/png", "image/jpeg", "image/gif", "image/bmp", "image/x-bmp", "image/x-ms-bmp", "application/pdf",
		"application/x-pdf", "application/zip", "application/x-zip-compressed", "application/jar",
		"application/json", "application/xml", "text/xml", "audio/mpeg", "audio/mp3", "audio/wav", "audio/x-wav",
		"audio/wave", "application/x-sh", "text/x-shellscript", "text/x-sh", "application/x-custom", "video/mp4",
	}
	for _, c := range contents {
		sniffed := mimetype.Detect(c)
		for _, d := range declared {
			require.Equal(t, sniffAgreesByIs(sniffed, d), pipeline.SniffAgrees(sniffed, d), "sniffed %s, declared %q", sniffed, d)
		}
	}
}
