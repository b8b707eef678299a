package realtimeauth_test

import (
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The size limits of issue 11: what a reader of the core has to learn, and
// how much of it one file or one function may hold.
const (
	maxExportedNames = 120
	maxFileLines     = 500
	maxFuncLines     = 60
	maxReadmeLines   = 400
)

// exportedNames lists the core package's exported names as godoc shows
// them: every exported constant, variable, type and function, and every
// exported method of an exported type. Struct fields and interface methods
// are not counted: they are read with their type.
func exportedNames(t *testing.T) []string {
	t.Helper()
	fset := gotoken.NewFileSet()
	var names []string
	for _, path := range goFiles(t, ".", false) {
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		require.NoError(t, err)
		for _, d := range f.Decls {
			names = append(names, declNames(d)...)
		}
	}
	slices.Sort(names)
	return names
}

func declNames(d ast.Decl) []string {
	var names []string
	switch d := d.(type) {
	case *ast.FuncDecl:
		if !d.Name.IsExported() {
			return nil
		}
		if d.Recv == nil {
			return []string{"func " + d.Name.Name}
		}
		recv := d.Recv.List[0].Type
		if star, ok := recv.(*ast.StarExpr); ok {
			recv = star.X
		}
		if id, ok := recv.(*ast.Ident); ok && id.IsExported() {
			names = append(names, "method "+id.Name+"."+d.Name.Name)
		}
	case *ast.GenDecl:
		for _, s := range d.Specs {
			switch s := s.(type) {
			case *ast.TypeSpec:
				if s.Name.IsExported() {
					names = append(names, "type "+s.Name.Name)
				}
			case *ast.ValueSpec:
				for _, n := range s.Names {
					if n.IsExported() {
						names = append(names, d.Tok.String()+" "+n.Name)
					}
				}
			}
		}
	}
	return names
}

// goFiles lists the non-test Go files under root: of the core package only
// (recursive false), or of every package and module in the repository,
// skipping dependencies and test data.
func goFiles(t *testing.T, root string, recursive bool) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != root && (!recursive || strings.HasPrefix(d.Name(), ".") ||
			d.Name() == "node_modules" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			files = append(files, p)
		}
		return nil
	})
	require.NoError(t, err)
	return files
}

func TestExportedNames(t *testing.T) {
	names := exportedNames(t)
	t.Logf("%d exported names", len(names))
	assert.LessOrEqual(t, len(names), maxExportedNames,
		"the core package exports too much:\n%s", strings.Join(names, "\n"))
}

// TestCodeSize holds every non-test file of every module to maxFileLines
// and every function to maxFuncLines, and the README to maxReadmeLines.
func TestCodeSize(t *testing.T) {
	fset := gotoken.NewFileSet()
	for _, path := range goFiles(t, ".", true) {
		src, err := os.ReadFile(path)
		require.NoError(t, err)
		if n := strings.Count(string(src), "\n"); n > maxFileLines {
			t.Errorf("%s: %d lines, more than %d", path, n, maxFileLines)
		}
		f, err := parser.ParseFile(fset, path, src, parser.SkipObjectResolution)
		require.NoError(t, err)
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok {
				continue
			}
			if n := fset.Position(fd.End()).Line - fset.Position(fd.Pos()).Line + 1; n > maxFuncLines {
				t.Errorf("%s: func %s: %d lines, more than %d", path, fd.Name.Name, n, maxFuncLines)
			}
		}
	}
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	assert.LessOrEqual(t, strings.Count(string(readme), "\n"), maxReadmeLines, "README.md")
}
