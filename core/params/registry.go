package params

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Registry holds the declared parameters. It is safe for concurrent use.
type Registry struct {
	mu    sync.RWMutex
	decls map[string]Decl // by key
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{decls: make(map[string]Decl)}
}

// Declare adds the declarations ds on behalf of owner ("core" or a plugin
// name), all or nothing. It fails, naming the key, on an invalid declaration
// (bad name or type, a default that does not validate, ...), on a key listed
// twice in ds, or on a key already declared by another owner. An owner
// declaring again one of its own keys replaces the declaration (a restarted
// plugin describing itself again). Defaults are stored in canonical form.
func (r *Registry) Declare(owner string, ds ...Decl) error {
	if owner == "" {
		return fmt.Errorf("declare parameters: %w: empty owner", ErrInvalidDecl)
	}
	checked := make([]Decl, 0, len(ds))
	seen := make(map[string]bool, len(ds))
	for _, d := range ds {
		d = d.clone()
		d.Owner = owner
		cd, err := d.check()
		if err != nil {
			return fmt.Errorf("declare parameters of %s: %w", owner, err)
		}
		if seen[cd.Key()] {
			return fmt.Errorf("declare parameters of %s: %w: %q is listed twice", owner, ErrInvalidDecl, cd.Key())
		}
		seen[cd.Key()] = true
		checked = append(checked, cd)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range checked {
		if prev, ok := r.decls[d.Key()]; ok && prev.Owner != owner {
			return fmt.Errorf("declare parameters of %s: %w: %q is declared by %s",
				owner, ErrDuplicateKey, d.Key(), prev.Owner)
		}
	}
	for _, d := range checked {
		r.decls[d.Key()] = d
	}
	return nil
}

// RemoveOwner removes every declaration of owner (a plugin being unloaded).
func (r *Registry) RemoveOwner(owner string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, d := range r.decls {
		if d.Owner == owner {
			delete(r.decls, k)
		}
	}
}

// Lookup returns the declaration of key.
func (r *Registry) Lookup(key string) (Decl, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	d, ok := r.decls[key]
	return d.clone(), ok
}

// All returns every declaration, sorted by key.
func (r *Registry) All() []Decl {
	r.mu.RLock()
	out := make([]Decl, 0, len(r.decls))
	for _, d := range r.decls {
		out = append(out, d.clone())
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// Owned returns the declarations of owner, sorted by key.
func (r *Registry) Owned(owner string) []Decl {
	var out []Decl
	for _, d := range r.All() {
		if d.Owner == owner {
			out = append(out, d)
		}
	}
	return out
}

// UnknownKeyError is the error about a key nobody declared.
type UnknownKeyError struct {
	// Key is the key asked for.
	Key string
	// Close lists declared keys that look like Key, closest first.
	Close []string
	// Category lists, sorted, the keys of Key's category when none is
	// close (a mistyped name in a known category).
	Category []string
}

// Error returns e.g. `unknown parameter "conection.port" (did you mean
// connection.port?)`, or `unknown parameter "cache.nope" (the cache
// parameters are cache.enabled, …)`, or says where the keys are listed.
func (e *UnknownKeyError) Error() string {
	msg := "unknown parameter " + quote(e.Key)
	switch {
	case len(e.Close) > 0:
		msg += " (did you mean " + strings.Join(e.Close, " or ") + "?)"
	case len(e.Category) > 0:
		cat, _, _ := strings.Cut(e.Category[0], ".")
		msg += " (the " + cat + " parameters are " + strings.Join(e.Category, ", ") + ")"
	default:
		msg += " (a key is category.name: `backend profile params PROFILE` lists them)"
	}
	return msg
}

// Unwrap returns ErrUnknownKey.
func (e *UnknownKeyError) Unwrap() error { return ErrUnknownKey }

func (r *Registry) unknown(key string) error {
	r.mu.RLock()
	keys := make([]string, 0, len(r.decls))
	for k := range r.decls {
		keys = append(keys, k)
	}
	r.mu.RUnlock()
	e := &UnknownKeyError{Key: key, Close: closeKeys(key, keys, 3)}
	if len(e.Close) == 0 {
		cat, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(key)), ".")
		for _, k := range keys {
			if kc, _, _ := strings.Cut(k, "."); kc == cat {
				e.Category = append(e.Category, k)
			}
		}
		sort.Strings(e.Category)
	}
	return e
}

// Normalize validates raw text for key and returns its canonical form:
//   - bool: "true" or "false" (accepts true/false, yes/no, on/off, 1/0 in any
//     case);
//   - int: base 10, within Min..Max;
//   - duration: time.Duration.String of a non-negative Go duration;
//   - list: a JSON array of strings (accepts also a comma-separated list);
//   - enum: one of the choices, exactly;
//   - string: any UTF-8 text without NUL bytes, unchanged;
//   - secret: any non-empty UTF-8 text without NUL bytes, unchanged.
//
// The canonical form is a fixed point. An unknown key gives an
// *UnknownKeyError (wrapping ErrUnknownKey) listing close keys; a refused
// value gives a *ValueError (wrapping ErrInvalidValue) naming the key and
// what it accepts, and never containing a secret's value.
func (r *Registry) Normalize(key, raw string) (string, error) {
	d, ok := r.Lookup(key)
	if !ok {
		return "", r.unknown(key)
	}
	return normalizeDecl(d, raw)
}

func normalizeDecl(d Decl, raw string) (string, error) {
	v, rerr := normalize(d, raw)
	if rerr != nil {
		return "", &ValueError{Key: d.Key(), Reason: rerr.reason, Accepts: d.Accepts()}
	}
	return v, nil
}

// Source tells where a resolved value comes from.
type Source string

// The sources, from the highest precedence to the lowest.
const (
	SourceProfile Source = "profile"
	SourceConfig  Source = "config"
	SourceDefault Source = "default"
)

// Resolved is the effective value of a parameter for a profile.
type Resolved struct {
	// Decl is the parameter's declaration.
	Decl Decl
	// Value is the canonical value; for a secret, Mask when set and "" when
	// not.
	Value string
	// Source tells where Value comes from.
	Source Source
}

// Resolve returns the effective value of key with the precedence profile >
// config > default. profile holds the profile's stored values (canonical
// text by key); for a secret, any non-empty placeholder tells that it is
// set. config holds the daemon config's `params.` table (key → raw text).
// Values found are validated again (a declaration may have changed since a
// value was stored); an invalid one is an error naming the key and its
// source. A secret in config is refused: secrets are per profile.
func (r *Registry) Resolve(key string, profile, config map[string]string) (Resolved, error) {
	d, ok := r.Lookup(key)
	if !ok {
		return Resolved{}, r.unknown(key)
	}
	res, errs := resolve(d, profile, config)
	if len(errs) > 0 {
		return Resolved{}, errs[0]
	}
	return res, nil
}

// ResolveAll resolves every declared parameter, sorted by key. It always
// returns one entry per declaration: a profile or config value that does not
// validate any more is skipped in favour of the next source, and the
// returned error (nil if none) names each such key. Keys of profile or
// config that nobody declared are ignored here (see CheckConfig).
func (r *Registry) ResolveAll(profile, config map[string]string) ([]Resolved, error) {
	decls := r.All()
	out := make([]Resolved, 0, len(decls))
	var errs []error
	for _, d := range decls {
		res, es := resolve(d, profile, config)
		out = append(out, res)
		errs = append(errs, es...)
	}
	return out, errors.Join(errs...)
}

// resolve returns the best valid value and the errors about the invalid ones
// met on the way.
func resolve(d Decl, profile, config map[string]string) (Resolved, []error) {
	key := d.Key()
	var errs []error
	if v, ok := profile[key]; ok {
		if d.Secret() {
			if v != "" {
				return Resolved{Decl: d, Value: Mask, Source: SourceProfile}, nil
			}
		} else if canon, err := normalizeDecl(d, v); err == nil {
			return Resolved{Decl: d, Value: canon, Source: SourceProfile}, nil
		} else {
			errs = append(errs, fmt.Errorf("stored profile value: %w", err))
		}
	}
	if v, ok := config[key]; ok {
		if d.Secret() {
			errs = append(errs, secretInConfig(d))
		} else if canon, err := normalizeDecl(d, v); err == nil {
			return Resolved{Decl: d, Value: canon, Source: SourceConfig}, errs
		} else {
			errs = append(errs, fmt.Errorf("config params.%s: %w", key, err))
		}
	}
	return Resolved{Decl: d, Value: d.Default, Source: SourceDefault}, errs
}

func secretInConfig(d Decl) error {
	return &ValueError{
		Key:    d.Key(),
		Reason: "a secret cannot be set in the config file (value not shown); set it per profile instead",
	}
}

// ConfigError lists the bad keys of the config's `params.` table.
type ConfigError struct {
	// Errs holds one error per bad key, sorted by key.
	Errs []error
}

// Error returns all the problems on one line.
func (e *ConfigError) Error() string {
	parts := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		parts[i] = err.Error()
	}
	return "config table [params]: " + strings.Join(parts, "; ")
}

// Unwrap returns the per-key errors.
func (e *ConfigError) Unwrap() []error { return e.Errs }

// CheckConfig validates the daemon config's `params.` table (key → raw
// text), once every plugin has declared its parameters: an unknown key, a
// value its parameter does not accept, or a secret (secrets are per profile)
// is an error. The returned *ConfigError names each bad key.
func (r *Registry) CheckConfig(config map[string]string) error {
	keys := make([]string, 0, len(config))
	for k := range config {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		d, ok := r.Lookup(k)
		switch {
		case !ok:
			errs = append(errs, r.unknown(k))
		case d.Secret():
			errs = append(errs, secretInConfig(d))
		default:
			if _, err := normalizeDecl(d, config[k]); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return &ConfigError{Errs: errs}
	}
	return nil
}

// closeKeys returns up to n of keys that look like key, closest first: a
// small edit distance, the same name in another category, or a key starting
// with key. Candidates much farther than the closest one are dropped.
func closeKeys(key string, keys []string, n int) []string {
	type cand struct {
		key  string
		dist int
	}
	lk := strings.ToLower(strings.TrimSpace(key))
	name := lk
	if i := strings.LastIndexByte(lk, '.'); i >= 0 {
		name = lk[i+1:]
	}
	limit := len(lk)/4 + 1
	if limit > 2 {
		limit = 2
	}
	var cands []cand
	for _, k := range keys {
		dist := editDistance(lk, k, limit+1)
		kname := k[strings.IndexByte(k, '.')+1:]
		switch {
		case dist <= limit:
		case name != "" && kname == name:
			dist = limit + 1
		case lk != "" && strings.HasPrefix(k, lk):
			dist = limit + 2
		default:
			continue
		}
		cands = append(cands, cand{k, dist})
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].dist != cands[j].dist {
			return cands[i].dist < cands[j].dist
		}
		return cands[i].key < cands[j].key
	})
	var out []string
	for i := 0; i < len(cands) && i < n && cands[i].dist <= cands[0].dist+1; i++ {
		out = append(out, cands[i].key)
	}
	return out
}

// editDistance returns the Levenshtein distance between a and b (in bytes),
// or max when it is at least max.
func editDistance(a, b string, max int) int {
	if d := len(a) - len(b); d >= max || -d >= max {
		return max
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin >= max {
			return max
		}
		prev, cur = cur, prev
	}
	return min(prev[len(b)], max)
}
