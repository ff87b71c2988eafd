// Package params is the typed registry of per-profile parameters.
//
// The core, the built-in plugins and the external plugins declare parameters
// (Decl) under a key "category.name". A value is always handled as text in a
// canonical form (see Normalize); typed accessors (ParseBool, ParseInt,
// ParseDuration, ParseList) read a canonical value. The effective value of a
// parameter for a profile is resolved with the precedence
// profile value > daemon config (`params.` table) > declared default.
//
// The package knows nothing about storage: callers pass the profile's stored
// values and the config table as maps. Secret values never go through
// Resolve, and no error of this package ever contains a secret's value.
package params

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	sdk "example.org/backend/plugin-sdk"
)

// Type is the type of a parameter's value.
type Type string

// The parameter types.
const (
	// TypeBool is a boolean; canonical "true" or "false".
	TypeBool Type = "bool"
	// TypeInt is a base-10 64-bit integer, optionally bounded by Min and Max.
	TypeInt Type = "int"
	// TypeString is any UTF-8 text without NUL bytes.
	TypeString Type = "string"
	// TypeEnum is one of the declared Choices, exactly.
	TypeEnum Type = "enum"
	// TypeDuration is a non-negative Go duration ("30s", "1h30m0s").
	TypeDuration Type = "duration"
	// TypeList is a list of strings; canonical form is a JSON array.
	TypeList Type = "list"
	// TypeSecret is any non-empty UTF-8 text without NUL bytes, stored
	// encrypted and never displayed.
	TypeSecret Type = "secret"
)

// Valid reports whether t is one of the known types.
func (t Type) Valid() bool {
	switch t {
	case TypeBool, TypeInt, TypeString, TypeEnum, TypeDuration, TypeList, TypeSecret:
		return true
	}
	return false
}

// Mask replaces a secret's value wherever a value is displayed.
const Mask = "********"

// MaxValueLen is the largest accepted value, in bytes, for any type.
const MaxValueLen = 64 << 10

// ErrUnknownKey is wrapped by the errors about a key nobody declared.
var ErrUnknownKey = errors.New("unknown parameter")

// ErrInvalidValue is wrapped by the errors about a value a parameter does not
// accept.
var ErrInvalidValue = errors.New("invalid parameter value")

// ErrInvalidDecl is wrapped by the errors about a malformed declaration.
var ErrInvalidDecl = errors.New("invalid parameter declaration")

// ErrDuplicateKey is wrapped by the errors about a key already declared by
// another owner.
var ErrDuplicateKey = errors.New("parameter already declared")

// Decl declares one parameter.
type Decl struct {
	// Category and Name form the key Category + "." + Name; both are
	// lowercase [a-z0-9_]+.
	Category, Name string
	// Type is the value's type.
	Type Type
	// Default is the default value as text. Declare stores its canonical
	// form. "" is allowed for string, secret and list (meaning empty); a
	// secret's default must be "".
	Default string
	// Min and Max bound an int, inclusively; either may be nil.
	Min, Max *int64
	// Choices lists the values of an enum.
	Choices []string
	// Help is a one-line description for people.
	Help string
	// NeedsReconnect says that a change takes effect on the next connection.
	NeedsReconnect bool
	// Owner is "core" or the declaring plugin's name; Declare fills it.
	Owner string
}

// Key returns "category.name".
func (d Decl) Key() string { return d.Category + "." + d.Name }

// Secret reports whether the parameter holds a secret.
func (d Decl) Secret() bool { return d.Type == TypeSecret }

// Bounds returns the constraints for people: "1..65535", ">= 1", "<= 10",
// "one of: a, b", or "" when there are none.
func (d Decl) Bounds() string {
	switch d.Type {
	case TypeInt:
		switch {
		case d.Min != nil && d.Max != nil:
			return strconv.FormatInt(*d.Min, 10) + ".." + strconv.FormatInt(*d.Max, 10)
		case d.Min != nil:
			return ">= " + strconv.FormatInt(*d.Min, 10)
		case d.Max != nil:
			return "<= " + strconv.FormatInt(*d.Max, 10)
		}
	case TypeEnum:
		return "one of: " + strings.Join(d.Choices, ", ")
	}
	return ""
}

// Accepts describes the accepted values for people, as used in error
// messages: "an integer in 1..65535", "true or false", ...
func (d Decl) Accepts() string {
	switch d.Type {
	case TypeBool:
		return "true or false (also yes/no, on/off, 1/0)"
	case TypeInt:
		switch {
		case d.Min != nil && d.Max != nil:
			return "an integer in " + d.Bounds()
		case d.Min != nil || d.Max != nil:
			return "an integer " + d.Bounds()
		}
		return "an integer"
	case TypeString:
		return "any text without NUL bytes"
	case TypeEnum:
		return d.Bounds()
	case TypeDuration:
		return "a non-negative duration such as 30s, 5m or 1h30m"
	case TypeList:
		return `a JSON array of strings such as ["a","b"] or a comma-separated list`
	case TypeSecret:
		return "any non-empty text without NUL bytes"
	}
	return "nothing (unknown type " + strconv.Quote(string(d.Type)) + ")"
}

// Int64 returns a pointer to v, for Decl.Min and Decl.Max literals.
func Int64(v int64) *int64 { return &v }

// clone returns a deep copy of d, so that callers cannot alias the
// registry's slices and pointers.
func (d Decl) clone() Decl {
	if d.Min != nil {
		d.Min = Int64(*d.Min)
	}
	if d.Max != nil {
		d.Max = Int64(*d.Max)
	}
	if d.Choices != nil {
		d.Choices = append([]string(nil), d.Choices...)
	}
	return d
}

var identRE = regexp.MustCompile(`^[a-z0-9_]+$`)

// check validates the declaration and returns it with its default in
// canonical form.
func (d Decl) check() (Decl, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %s: %s", ErrInvalidDecl, strconv.Quote(d.Key()), fmt.Sprintf(format, args...))
	}
	if !identRE.MatchString(d.Category) {
		return d, bad("category must be lowercase [a-z0-9_]+")
	}
	if !identRE.MatchString(d.Name) {
		return d, bad("name must be lowercase [a-z0-9_]+")
	}
	if !d.Type.Valid() {
		return d, bad("unknown type %q", string(d.Type))
	}
	if (d.Min != nil || d.Max != nil) && d.Type != TypeInt {
		return d, bad("min and max apply only to int parameters")
	}
	if d.Min != nil && d.Max != nil && *d.Min > *d.Max {
		return d, bad("min %d is greater than max %d", *d.Min, *d.Max)
	}
	if d.Type == TypeEnum {
		if len(d.Choices) == 0 {
			return d, bad("an enum needs choices")
		}
		seen := make(map[string]bool, len(d.Choices))
		for _, c := range d.Choices {
			if c == "" || strings.TrimSpace(c) != c || !cleanText(c) {
				return d, bad("choice %q must be non-empty text without surrounding spaces", c)
			}
			if seen[c] {
				return d, bad("choice %q is listed twice", c)
			}
			seen[c] = true
		}
	} else if len(d.Choices) != 0 {
		return d, bad("choices apply only to enum parameters")
	}
	if d.Type == TypeSecret {
		if d.Default != "" {
			return d, bad("a secret cannot have a default")
		}
		return d, nil
	}
	canon, err := normalize(d, d.Default)
	if err != nil {
		return d, bad("default: %s", err.reason)
	}
	d.Default = canon
	return d, nil
}

// FromSDK converts the parameter declarations of a plugin (sdk.Param) into
// registry declarations.
func FromSDK(ps []sdk.Param) []Decl {
	decls := make([]Decl, 0, len(ps))
	for _, p := range ps {
		decls = append(decls, Decl{
			Category: p.Category, Name: p.Name, Type: Type(p.Type), Default: p.Default,
			Min: p.Min, Max: p.Max, Choices: p.Choices, Help: p.Help, NeedsReconnect: p.NeedsReconnect,
		})
	}
	return decls
}
