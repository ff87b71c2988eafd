package pep

import (
	sdk "example.org/backend/plugin-sdk"
)

// Nick is a parsed XEP-0172 nickname.
type Nick struct {
	// Nick is the nickname, null when empty.
	Nick *string `json:"nick"`
}

func parseNick(it sdk.Item) (any, string, error) {
	root, err := readTree(it.Payload, NSNick, "nick", "XEP-0172 nick")
	if err != nil {
		return nil, "", err
	}
	n := Nick{Nick: textPtr(root.text.String())}
	if n.Nick == nil {
		return n, "", nil
	}
	return n, *n.Nick, nil
}
