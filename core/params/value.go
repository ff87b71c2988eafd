package params

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ValueError is the error about a value a parameter does not accept. Its
// text never contains the value of a secret.
type ValueError struct {
	// Key is the parameter's key.
	Key string
	// Reason says what is wrong, e.g. `"abc" is not an integer`.
	Reason string
	// Accepts describes the accepted values (Decl.Accepts); may be empty.
	Accepts string
}

// Error returns e.g. `connection.port: "abc" is not an integer (accepts an
// integer in 1..65535)`.
func (e *ValueError) Error() string {
	if e.Accepts == "" {
		return e.Key + ": " + e.Reason
	}
	return e.Key + ": " + e.Reason + " (accepts " + e.Accepts + ")"
}

// Unwrap returns ErrInvalidValue.
func (e *ValueError) Unwrap() error { return ErrInvalidValue }

// reasonError is what normalize returns: the reason only; the caller adds
// the key and the accepted values.
type reasonError struct{ reason string }

func (e *reasonError) Error() string { return e.reason }

func reasonf(format string, args ...any) *reasonError {
	return &reasonError{reason: fmt.Sprintf(format, args...)}
}

// quote renders a (non-secret) value for an error message, shortened.
func quote(s string) string {
	const max = 40
	if utf8.RuneCountInString(s) > max {
		n := 0
		for i := range s {
			if n == max {
				return strconv.Quote(s[:i]) + "…"
			}
			n++
		}
	}
	return strconv.Quote(s)
}

// cleanText reports whether s is valid UTF-8 without NUL bytes.
func cleanText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// normalize validates raw for d and returns its canonical form. For a
// secret, the reason never contains raw.
func normalize(d Decl, raw string) (string, *reasonError) {
	if len(raw) > MaxValueLen {
		return "", reasonf("the value is too long (%d bytes, at most %d)", len(raw), MaxValueLen)
	}
	switch d.Type {
	case TypeSecret:
		switch {
		case raw == "":
			return "", reasonf("the secret is empty")
		case !utf8.ValidString(raw):
			return "", reasonf("the secret is not valid UTF-8")
		case strings.ContainsRune(raw, 0):
			return "", reasonf("the secret contains a NUL byte")
		}
		return raw, nil
	case TypeString:
		switch {
		case !utf8.ValidString(raw):
			return "", reasonf("%s is not valid UTF-8", quote(raw))
		case strings.ContainsRune(raw, 0):
			return "", reasonf("%s contains a NUL byte", quote(raw))
		}
		return raw, nil
	case TypeBool:
		b, err := ParseBool(raw)
		if err != nil {
			return "", reasonf("%s is not a boolean", quote(raw))
		}
		return strconv.FormatBool(b), nil
	case TypeInt:
		v, err := ParseInt(raw)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return "", reasonf("%s is out of range", quote(raw))
			}
			return "", reasonf("%s is not an integer", quote(raw))
		}
		if (d.Min != nil && v < *d.Min) || (d.Max != nil && v > *d.Max) {
			return "", reasonf("%d is out of range", v)
		}
		return strconv.FormatInt(v, 10), nil
	case TypeEnum:
		for _, c := range d.Choices {
			if raw == c {
				return raw, nil
			}
		}
		return "", reasonf("%s is not a valid choice", quote(raw))
	case TypeDuration:
		v, err := ParseDuration(raw)
		if err != nil {
			if errors.Is(err, errNegative) {
				return "", reasonf("%s is negative", quote(raw))
			}
			return "", reasonf("%s is not a duration", quote(raw))
		}
		return v.String(), nil
	case TypeList:
		items, err := ParseList(raw)
		if err != nil {
			return "", reasonf("%s is not a list: %v", quote(raw), err)
		}
		return formatList(items), nil
	}
	return "", reasonf("unknown type %q", string(d.Type))
}

// ParseBool reads a boolean: true/false, yes/no, on/off, 1/0, in any case,
// surrounding spaces ignored.
func ParseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "yes", "on", "1":
		return true, nil
	case "false", "no", "off", "0":
		return false, nil
	}
	return false, fmt.Errorf("parse bool %s: not one of true/false, yes/no, on/off, 1/0", quote(s))
}

// ParseInt reads a base-10 64-bit integer, surrounding spaces ignored.
func ParseInt(s string) (int64, error) {
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) {
			return 0, fmt.Errorf("parse int %s: %w", quote(s), ne.Err)
		}
		return 0, fmt.Errorf("parse int %s: %w", quote(s), err)
	}
	return v, nil
}

var errNegative = errors.New("negative duration")

// ParseDuration reads a non-negative Go duration ("30s", "1h30m"),
// surrounding spaces ignored.
func ParseDuration(s string) (time.Duration, error) {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("parse duration %s: %w", quote(s), err)
	}
	if v < 0 {
		return 0, fmt.Errorf("parse duration %s: %w", quote(s), errNegative)
	}
	return v, nil
}

// ParseList reads a list of strings: a JSON array of strings (the canonical
// form) when s starts with "[" after spaces, otherwise a comma-separated
// list whose items are trimmed and whose empty items are dropped ("" is the
// empty list). Items must be UTF-8 without NUL bytes.
func ParseList(s string) ([]string, error) {
	if !utf8.ValidString(s) {
		return nil, errors.New("not valid UTF-8")
	}
	trimmed := strings.TrimSpace(s)
	items := []string{}
	if strings.HasPrefix(trimmed, "[") {
		if err := json.Unmarshal([]byte(trimmed), &items); err != nil {
			return nil, errors.New("not a JSON array of strings")
		}
		if items == nil { // "[]" decodes to an empty, non-nil slice; be sure
			items = []string{}
		}
	} else {
		for _, it := range strings.Split(trimmed, ",") {
			if it = strings.TrimSpace(it); it != "" {
				items = append(items, it)
			}
		}
	}
	for _, it := range items {
		if strings.ContainsRune(it, 0) {
			return nil, errors.New("an item contains a NUL byte")
		}
	}
	return items, nil
}

// FormatList returns the canonical form of a list: a JSON array of strings
// ("[]" for an empty or nil list).
func FormatList(items []string) string { return formatList(items) }

func formatList(items []string) string {
	if len(items) == 0 {
		return "[]"
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(items); err != nil {
		// Encoding a []string cannot fail.
		panic(fmt.Sprintf("params: encode list: %v", err))
	}
	return strings.TrimSuffix(buf.String(), "\n")
}
