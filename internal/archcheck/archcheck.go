// Package archcheck enforces the import rules of DESIGN §2 on a module:
//
//   - core/… never imports plugins/…;
//   - triggers/… imports nothing else of the module;
//   - plugins/X imports plugins/Y only when X declares Y in the
//     Dependencies of its PluginInfo (read from the source);
//   - declared plugin dependencies form no cycle;
//   - plugin-sdk (its own module) imports nothing of the root module.
//
// Package data comes from `go list -json`, so the check sees exactly what the
// go command builds, test files included.
package archcheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Package is the part of `go list -json` output the rules need.
type Package struct {
	ImportPath   string
	Dir          string
	Module       *struct{ Path string }
	GoFiles      []string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// List runs `go list -json ./...` in dir.
func List(dir string) ([]Package, error) {
	cmd := exec.Command("go", "list", "-e", "-json", "./...")
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go list in %s: %w: %s", dir, err, errb.String())
	}
	var pkgs []Package
	dec := json.NewDecoder(&out)
	for dec.More() {
		var p Package
		if err := dec.Decode(&p); err != nil {
			return nil, fmt.Errorf("decode go list output: %w", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}

// Violation is one broken rule.
type Violation struct {
	Package string
	Rule    string
}

func (v Violation) String() string { return v.Package + ": " + v.Rule }

// Check applies the rules to the packages of the module called module.
func Check(module string, pkgs []Package) ([]Violation, error) {
	var vs []Violation
	rel := func(path string) (string, bool) {
		if path == module {
			return "", true
		}
		r, ok := strings.CutPrefix(path, module+"/")
		return r, ok
	}
	// Declared dependencies of each plugin (by directory name).
	declared := map[string][]string{}
	for _, p := range pkgs {
		r, ok := rel(p.ImportPath)
		if !ok {
			continue
		}
		parts := strings.Split(r, "/")
		if len(parts) == 2 && parts[0] == "plugins" {
			name, deps, err := declaredDeps(p)
			if err != nil {
				return nil, err
			}
			if name != "" && name != parts[1] {
				vs = append(vs, Violation{p.ImportPath, fmt.Sprintf("plugin import name %q differs from its directory %q", name, parts[1])})
			}
			declared[parts[1]] = deps
		}
	}
	for _, p := range pkgs {
		r, ok := rel(p.ImportPath)
		if !ok {
			continue
		}
		imports := append(append(append([]string{}, p.Imports...), p.TestImports...), p.XTestImports...)
		sort.Strings(imports)
		for _, imp := range dedupe(imports) {
			ir, ours := rel(imp)
			if !ours {
				continue
			}
			switch {
			case r == "core" || strings.HasPrefix(r, "core/"):
				if strings.HasPrefix(ir, "plugins/") || ir == "plugins" {
					vs = append(vs, Violation{p.ImportPath, "core must not import plugins (" + imp + ")"})
				}
			case r == "triggers" || strings.HasPrefix(r, "triggers/"):
				if ir != "triggers" && !strings.HasPrefix(ir, "triggers/") {
					vs = append(vs, Violation{p.ImportPath, "triggers must not import the rest of the module (" + imp + ")"})
				}
			case strings.HasPrefix(r, "plugins/"):
				from := strings.Split(r, "/")[1]
				if !strings.HasPrefix(ir, "plugins/") {
					if strings.HasPrefix(ir, "cmd/") {
						vs = append(vs, Violation{p.ImportPath, "plugins must not import cmd (" + imp + ")"})
					}
					continue
				}
				to := strings.Split(ir, "/")[1]
				if to != from && !contains(declared[from], to) {
					vs = append(vs, Violation{p.ImportPath, fmt.Sprintf("plugin %s imports plugin %s without declaring it in its Dependencies", from, to)})
				}
			}
		}
	}
	if cyc := findCycle(declared); cyc != nil {
		vs = append(vs, Violation{module + "/plugins", "declared plugin dependencies form a cycle: " + strings.Join(cyc, " → ")})
	}
	return vs, nil
}

// CheckSDK verifies that no package of the SDK module imports root.
func CheckSDK(root string, pkgs []Package) []Violation {
	var vs []Violation
	for _, p := range pkgs {
		for _, imp := range append(append(append([]string{}, p.Imports...), p.TestImports...), p.XTestImports...) {
			if (imp == root || strings.HasPrefix(imp, root+"/")) && !strings.HasPrefix(imp, root+"/plugin-sdk") {
				vs = append(vs, Violation{p.ImportPath, "plugin-sdk must not import the daemon module (" + imp + ")"})
			}
		}
	}
	return vs
}

// declaredDeps reads `ImportName: …` and `Dependencies: []string{…}` from
// the PluginInfo literal in the package's non-test files. Values may be
// string literals, constants of the package, or `otherplugin.ImportName`
// (resolved to that plugin's directory, which must equal its import name).
func declaredDeps(p Package) (string, []string, error) {
	fset := token.NewFileSet()
	var files []*ast.File
	consts := map[string]string{}
	for _, f := range p.GoFiles {
		file, err := parser.ParseFile(fset, filepath.Join(p.Dir, f), nil, 0)
		if err != nil {
			return "", nil, fmt.Errorf("parse %s: %w", f, err)
		}
		files = append(files, file)
		for _, d := range file.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if i < len(vs.Values) {
						if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
							consts[n.Name], _ = strconv.Unquote(lit.Value)
						}
					}
				}
			}
		}
	}
	var name string
	var deps []string
	for _, file := range files {
		imports := map[string]string{} // local name → import path
		for _, im := range file.Imports {
			path, _ := strconv.Unquote(im.Path.Value)
			local := path[strings.LastIndex(path, "/")+1:]
			if im.Name != nil {
				local = im.Name.Name
			}
			imports[local] = path
		}
		value := func(e ast.Expr) (string, bool) {
			switch v := e.(type) {
			case *ast.BasicLit:
				if v.Kind == token.STRING {
					s, err := strconv.Unquote(v.Value)
					return s, err == nil
				}
			case *ast.Ident:
				s, ok := consts[v.Name]
				return s, ok
			case *ast.SelectorExpr:
				if x, ok := v.X.(*ast.Ident); ok && v.Sel.Name == "ImportName" {
					if path, ok := imports[x.Name]; ok {
						return path[strings.LastIndex(path, "/")+1:], true
					}
				}
			}
			return "", false
		}
		ast.Inspect(file, func(n ast.Node) bool {
			kv, ok := n.(*ast.KeyValueExpr)
			if !ok {
				return true
			}
			key, ok := kv.Key.(*ast.Ident)
			if !ok {
				return true
			}
			switch key.Name {
			case "ImportName":
				if s, ok := value(kv.Value); ok {
					name = s
				}
			case "Dependencies":
				if cl, ok := kv.Value.(*ast.CompositeLit); ok {
					for _, e := range cl.Elts {
						if s, ok := value(e); ok {
							deps = append(deps, s)
						}
					}
				}
			}
			return true
		})
	}
	return name, deps, nil
}

func findCycle(g map[string][]string) []string {
	names := make([]string, 0, len(g))
	for n := range g {
		names = append(names, n)
	}
	sort.Strings(names)
	state := map[string]int{}
	var stack []string
	var cycle []string
	var visit func(string) bool
	visit = func(n string) bool {
		switch state[n] {
		case 1:
			for i, s := range stack {
				if s == n {
					cycle = append(append([]string{}, stack[i:]...), n)
				}
			}
			return true
		case 2:
			return false
		}
		state[n] = 1
		stack = append(stack, n)
		for _, d := range g[n] {
			if visit(d) {
				return true
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = 2
		return false
	}
	for _, n := range names {
		if visit(n) {
			return cycle
		}
	}
	return nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func dedupe(sorted []string) []string {
	out := sorted[:0]
	for i, s := range sorted {
		if i == 0 || s != sorted[i-1] {
			out = append(out, s)
		}
	}
	return out
}
