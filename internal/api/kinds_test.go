package api

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
)

// kindName is how a problem kind is written in source: "probX" (this package's), or "problem.X".
func kindName(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		if x, ok := e.X.(*ast.Ident); ok {
			return x.Name + "." + e.Sel.Name
		}
	}
	return ""
}

// TestEveryListedProblemKindIsReturned: problemKinds, which openapi.json's list of problem types
// must equal (TestOpenAPIMatchesRoutes), holds only kinds some code of the API returns: a kind
// declared and documented but never returned (invalid-id was: a malformed id is not-found, as
// another owner's is) promises clients an answer they never get. A kind counts as returned when
// the API's, internal/auth's (Authenticate answers its 401s and 403s) or internal/ratelimit's
// (Refuse answers its 429s) code names it anywhere but in its own declaration and in problemKinds.
func TestEveryListedProblemKindIsReturned(t *testing.T) {
	t.Parallel()
	fset := token.NewFileSet()
	listed := map[string]int{} // name → uses
	var files []*ast.File
	for _, dir := range []string{".", "../auth", "../ratelimit"} {
		paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
		require.NoError(t, err)
		for _, p := range paths {
			if strings.HasSuffix(p, "_test.go") {
				continue
			}
			src, err := os.ReadFile(p)
			require.NoError(t, err)
			f, err := parser.ParseFile(fset, p, src, 0)
			require.NoError(t, err)
			files = append(files, f)
		}
	}
	var list *ast.CompositeLit
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			if vs, ok := n.(*ast.ValueSpec); ok && len(vs.Names) == 1 && vs.Names[0].Name == "problemKinds" {
				list = vs.Values[0].(*ast.CompositeLit)
			}
			return true
		})
	}
	require.NotNil(t, list, "problemKinds not found")
	for _, e := range list.Elts {
		name := kindName(e)
		require.NotEmpty(t, name, "an element of problemKinds that is not a kind's name")
		listed[name] = 0
	}
	require.Len(t, listed, len(problemKinds))
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				if n == list {
					return false // the list itself
				}
			case *ast.ValueSpec:
				for _, v := range n.Values { // a declaration's names are not uses; its values are
					ast.Inspect(v, func(n ast.Node) bool {
						if n == list {
							return false // the list itself
						}
						if e, ok := n.(ast.Expr); ok {
							if _, ok := listed[kindName(e)]; ok {
								listed[kindName(e)]++
							}
						}
						return true
					})
				}
				return false
			case *ast.SelectorExpr, *ast.Ident:
				if _, ok := listed[kindName(n.(ast.Expr))]; ok {
					listed[kindName(n.(ast.Expr))]++
					return false
				}
			}
			return true
		})
	}
	for name, uses := range listed {
		require.Positive(t, uses, "problem kind %s is listed (and documented in openapi.json) but no code returns it", name)
	}
}

// TestUnauthorizedChallenges: every 401 the API answers carries the challenge
// (WWW-Authenticate: Bearer realm="intake", which RFC 9110 requires and openapi.json documents), on
// Uppy's routes too, whose errors are not problem documents. Each route is asked without credentials,
// through the contract (which checks the documented header).
func TestUnauthorizedChallenges(t *testing.T) {
	t.Parallel()
	srv := unitServer(t)
	hs := httptest.NewServer(testkit.NewContract(t, openAPIDoc).Handler(t, srv.Handler()))
	defer hs.Close()
	fill := strings.NewReplacer("{id}", "0196f1c0-7b7e-7c6a-9d51-3c1f0e2a9b10", "{uploadId}", "u1", "{partNumber}", "1")
	var checked int
	for _, rt := range srv.routes() {
		if rt.fam == familyPublic {
			continue
		}
		method, path, _ := strings.Cut(rt.pattern, " ")
		req, err := http.NewRequest(method, hs.URL+fill.Replace(path), nil)
		require.NoError(t, err)
		req.Header.Set(testkit.OffContract, "no credentials")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, rt.pattern)
		require.Equal(t, `Bearer realm="intake"`, resp.Header.Get("WWW-Authenticate"), "%s: a 401 without its challenge", rt.pattern)
		checked++
	}
	require.Equal(t, 16, checked)
}
