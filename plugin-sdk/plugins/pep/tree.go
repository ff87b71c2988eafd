package pep

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"example.org/backend/plugin-sdk/plugins/internal/safe"
)

// maxDepth bounds the element nesting read into a tree; deeper elements
// are skipped (none of the payloads needs more than a few levels).
const maxDepth = 16

// node is an element of a payload: its name, attributes, text and
// children.
type node struct {
	name  xml.Name
	attrs []xml.Attr
	text  strings.Builder
	kids  []*node
}

// readTree reads a payload into a tree and checks its root element.
func readTree(payload []byte, space, local, what string) (*node, error) {
	dec := xml.NewDecoder(bytes.NewReader(payload))
	dec.Strict = true
	dec.Entity = xml.HTMLEntity
	var stack []*node
	var root *node
	skip := 0 // depth below maxDepth being skipped
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			if root == nil {
				return nil, fmt.Errorf("%w: %s: empty payload", ErrNotPayload, what)
			}
			return nil, fmt.Errorf("read %s: %w", what, io.ErrUnexpectedEOF)
		}
		if err != nil {
			if root == nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrNotPayload, what, err)
			}
			return nil, fmt.Errorf("read %s: %w", what, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if skip > 0 || len(stack) >= maxDepth {
				skip++
				continue
			}
			n := &node{name: t.Name, attrs: t.Attr}
			if root == nil {
				if t.Name.Space != space || t.Name.Local != local {
					return nil, fmt.Errorf("%w: %s: root element is {%s}%s", ErrNotPayload, what, t.Name.Space, t.Name.Local)
				}
				root = n
			} else {
				stack[len(stack)-1].kids = append(stack[len(stack)-1].kids, n)
			}
			stack = append(stack, n)
		case xml.EndElement:
			if skip > 0 {
				skip--
				continue
			}
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return root, nil
			}
		case xml.CharData:
			if skip == 0 && len(stack) > 0 {
				stack[len(stack)-1].text.Write(t)
			}
		}
	}
}

// attr is the value of the attribute name without namespace.
func (n *node) attr(name string) string {
	for _, a := range n.attrs {
		if a.Name.Space == "" && a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// children are the child elements of the namespace space called local.
func (n *node) children(space, local string) []*node {
	var out []*node
	for _, k := range n.kids {
		if k.name.Space == space && k.name.Local == local {
			out = append(out, k)
		}
	}
	return out
}

// child is the first child of the namespace space called local, or nil.
func (n *node) child(space, local string) *node {
	for _, k := range n.kids {
		if k.name.Space == space && k.name.Local == local {
			return k
		}
	}
	return nil
}

// textPtr is the output form of a plain-text value (nil when empty).
func textPtr(s string) *string { return safe.TextPtr(s) }

// number reads a non-negative decimal (nil when it is not one).
func number(s string) *int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return nil
	}
	return &n
}

// xmlBool reads an xs:boolean ("true"/"1", "false"/"0"); anything else is
// false.
func xmlBool(s string) bool {
	switch strings.TrimSpace(s) {
	case "true", "1":
		return true
	}
	return false
}
