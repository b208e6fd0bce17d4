package coder_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackageDocs checks that every package has exactly one package comment,
// and that it starts with "Package <name>" (or "Command" for main).
func TestPackageDocs(t *testing.T) {
	t.Parallel()
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if path != "." && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "testdata") {
			return filepath.SkipDir
		}
		fset := token.NewFileSet()
		pkgs, err := parser.ParseDir(fset, path, func(fi os.FileInfo) bool {
			return !strings.HasSuffix(fi.Name(), "_test.go")
		}, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			return err
		}
		for pkgName, pkg := range pkgs {
			var docs []string
			for fname, f := range pkg.Files {
				if isGenerated(f) {
					continue
				}
				if f.Doc != nil {
					docs = append(docs, fname)
					want := "Package " + pkgName + " "
					if pkgName == "main" {
						want = "Command "
					}
					if !strings.HasPrefix(f.Doc.Text(), want) {
						t.Errorf("%s: package comment must start with %q", fname, want)
					}
				}
			}
			if len(docs) != 1 {
				t.Errorf("package %s (%s): want exactly one package comment, found %d %v", pkgName, path, len(docs), docs)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// isGenerated reports whether f carries the standard "Code generated ...
// DO NOT EDIT." comment before its package clause.
func isGenerated(f *ast.File) bool {
	for _, cg := range f.Comments {
		if cg.Pos() > f.Package {
			break
		}
		for _, c := range cg.List {
			if strings.HasPrefix(c.Text, "// Code generated ") && strings.HasSuffix(c.Text, " DO NOT EDIT.") {
				return true
			}
		}
	}
	return false
}
