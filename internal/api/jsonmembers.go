package api

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"sync"

	"github.com/intakehq/intake/internal/problem"
)

// exactMembers checks a body that encoding/json decoded into a value of type t for what it lets
// pass silently: a member given twice (encoding/json keeps the last value) and a member whose name
// matches a field in another case only (encoding/json matches names case-insensitively). Either
// makes the request mean two things: {"size":1,"size":4000000} reads as one size to a proxy, a log
// or a first-wins parser and as the other to intake, and so would
// {"content_type":"image/png","CONTENT_TYPE":"text/html"}. The fast paths (scanJSON) give such
// bodies up to encoding/json, so this check runs after it, on the objects decoded into structs at any
// depth (the parts of a complete request too). The app's own JSON (metadata: a map, a
// json.RawMessage, any) is not the request's shape and is left as it is.
func exactMembers(body []byte, t reflect.Type) *Problem {
	return walkMembers(json.NewDecoder(bytes.NewReader(body)), t)
}

// walkMembers reads the next value of dec, decoded into t, and checks the members of every object
// decoded into a struct (see exactMembers). The value is known to be valid JSON (encoding/json
// decoded it); a token error is reported as its own problem all the same.
func walkMembers(dec *json.Decoder, t reflect.Type) *Problem {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	tok, err := dec.Token()
	if err != nil {
		return jsonProblem(err)
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return nil // a scalar
	}
	switch {
	case delim == '{' && t.Kind() == reflect.Struct && !t.Implements(unmarshalerType) && !reflect.PointerTo(t).Implements(unmarshalerType):
		fields := structMembers(t)
		seen := make(map[string]bool, len(fields))
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return jsonProblem(err)
			}
			name, _ := tok.(string)
			ft, known := fields[name]
			if !known {
				return problemf(problem.UnknownField, "unknown field %q (member names are exact, in their case)", name)
			}
			if seen[name] {
				return problemf(problem.InvalidJSON, "member %q appears twice", name)
			}
			seen[name] = true
			if p := walkMembers(dec, ft); p != nil {
				return p
			}
		}
	case delim == '[' && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) && t != rawMessageType:
		for dec.More() {
			if p := walkMembers(dec, t.Elem()); p != nil {
				return p
			}
		}
	default:
		return skipRest(dec)
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return jsonProblem(err)
	}
	return nil
}

// skipRest reads the rest of an object or array whose opening delimiter was read.
func skipRest(dec *json.Decoder) *Problem {
	for depth := 1; depth > 0; {
		tok, err := dec.Token()
		if err != nil {
			return jsonProblem(err)
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}

var (
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	rawMessageType  = reflect.TypeFor[json.RawMessage]()
)

// memberTypes caches structMembers by struct type.
var memberTypes sync.Map // reflect.Type → map[string]reflect.Type

// structMembers returns the JSON member names encoding/json gives t's fields (their json tags, or
// the field names), with their types. Request bodies embed no structs, so promoted fields are not
// followed.
func structMembers(t reflect.Type) map[string]reflect.Type {
	if m, ok := memberTypes.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := map[string]reflect.Type{}
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		m[name] = f.Type
	}
	memberTypes.Store(t, m)
	return m
}
