package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// createUploadBodies are POST /v1/uploads bodies the fast path must leave to encoding/json
// (scanned: false), or read exactly as it does (true). Each names why.
var createUploadBodies = []struct {
	name    string
	body    string
	scanned bool
}{
	{"the benchmark's body", benchBody, true},
	{"every member", `{"filename":"a.csv","content_type":"text/csv","size":12,"sha256":"` + strings.Repeat("ab", 32) + `","method":"multipart","expires_in":600,"part_size":5242880,"metadata":{"user":"u1","tags":["a",1,-2.5e3,true,false,null]}}`, true},
	{"white space everywhere", " \t\n{ \"size\" : 0 ,\r\n \"filename\" : \"x\" } \n", true},
	{"empty object", `{}`, true},
	{"UTF-8 file name", `{"filename":"été 📷.jpg","size":1}`, true},
	{"integers null", `{"size":null,"expires_in":null,"part_size":null}`, true},
	{"metadata a string with escapes (kept as sent)", `{"size":1,"metadata":"a\u00e9\n"}`, true},
	{"metadata null (kept as the bytes null)", `{"size":1,"metadata":null}`, true},
	{"metadata with invalid UTF-8 (kept as sent)", "{\"size\":1,\"metadata\":{\"k\":\"a\xffb\"}}", true},
	{"largest integer read", `{"size":999999999999999999}`, true},

	{"unknown member", `{"size":1,"extra":true}`, false},
	{"member in another case", `{"Size":1}`, false},
	{"non-ASCII name that folds", "{\"\u017fize\":1}", false},
	{"member twice", `{"size":1,"size":2}`, false},
	{"escape in a string read", `{"filename":"a\"b","size":1}`, false},
	{"escape in a name", `{"s\u0069ze":1}`, false},
	{"invalid UTF-8 in a string read", "{\"filename\":\"a\xffb\",\"size\":1}", false},
	{"control character in a string", "{\"filename\":\"a\tb\",\"size\":1}", false},
	{"string null", `{"filename":null,"size":1}`, false},
	{"negative integer", `{"size":-1}`, false},
	{"fraction", `{"size":1.5}`, false},
	{"exponent", `{"size":1e3}`, false},
	{"19 digits", `{"size":1000000000000000000}`, false},
	{"leading zero", `{"size":01}`, false},
	{"integer a string", `{"size":"1"}`, false},
	{"string a number", `{"filename":1,"size":1}`, false},
	{"metadata too deep", `{"size":1,"metadata":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`, false},
	{"metadata invalid", `{"size":1,"metadata":{"a":}}`, false},
	{"not an object", `[{"size":1}]`, false},
	{"trailing comma", `{"size":1,}`, false},
	{"two values", `{"size":1}{"size":2}`, false},
	{"trailing garbage", `{"size":1} x`, false},
	{"null literal cut short", `{"size":nul}`, false},
	{"truncated", `{"size":1`, false},
	{"empty", ``, false},
}

// decodeStd is what decodeJSON did before the fast path: encoding/json, unknown fields refused,
// one value only.
func decodeStd(body []byte) (createUploadRequest, error) {
	var v createUploadRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return v, err
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return v, errors.New("more than one value")
	}
	return v, nil
}

// scanAgrees runs the fast path on body and, when it read it, encoding/json too: it fails t when
// the two differ, or when a fast path that gave up changed its receiver.
func scanAgrees(t *testing.T, body []byte) (scanned bool) {
	t.Helper()
	got := createUploadRequest{}
	if !got.scanJSON(body) {
		if !reflect.DeepEqual(got, createUploadRequest{}) {
			t.Fatalf("%q: the fast path gave up but changed its receiver: %+v", body, got)
		}
		return false
	}
	want, err := decodeStd(body)
	if err != nil {
		t.Fatalf("%q: the fast path read a body encoding/json refuses (%v): %+v", body, err, got)
	}
	if p := exactMembers(body, reflect.TypeFor[*createUploadRequest]()); p != nil {
		t.Fatalf("%q: the fast path read a body decodeJSON's member check refuses: %s", body, p.Detail)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: the fast path read %+v, encoding/json %+v", body, got, want)
	}
	return true
}

// TestCreateUploadBodyScan: the fast path reads the plain bodies exactly as encoding/json does and
// leaves every other one to it.
func TestCreateUploadBodyScan(t *testing.T) {
	for _, c := range createUploadBodies {
		t.Run(c.name, func(t *testing.T) {
			if got := scanAgrees(t, []byte(c.body)); got != c.scanned {
				t.Fatalf("scanned %v, want %v", got, c.scanned)
			}
		})
	}
}

// TestCreateUploadNamesMatchTags: the fast path knows every member of createUploadRequest by the
// name encoding/json gives it, in the order scanJSON's switch reads them (a renamed or added
// field must be added there too; until then its name sends bodies to encoding/json).
func TestCreateUploadNamesMatchTags(t *testing.T) {
	typ := reflect.TypeFor[createUploadRequest]()
	var tags []string
	for f := range typ.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		tags = append(tags, name)
	}
	if !reflect.DeepEqual(tags, createUploadNames) {
		t.Fatalf("createUploadRequest's JSON names %q, the fast path's %q", tags, createUploadNames)
	}
}

func FuzzCreateUploadBody(f *testing.F) {
	for _, c := range createUploadBodies {
		f.Add([]byte(c.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) { scanAgrees(t, body) })
}
