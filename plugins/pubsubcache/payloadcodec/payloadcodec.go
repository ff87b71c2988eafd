// Package payloadcodec is how the pubsub cache stores an item's payload:
// small XML payloads are packed with S2 (Snappy's faster successor) primed
// with a dictionary of the boilerplate of common pubsub payloads (Atom
// entries of XEP-0277 in both quoting styles, bookmarks, avatar metadata,
// vCard 4, data forms). A microblog post of ~800 bytes is stored in ~400;
// unpacking it takes about a microsecond.
//
// The stored form is self-describing, so rows written before packing (raw
// XML) and packed rows live side by side, and a payload that would not
// shrink is kept raw:
//
//   - raw: the XML itself. XML never contains a NUL character, so a raw
//     payload never starts with 0x00.
//   - packed: 0x00, a codec byte (1: S2 block with dictionary atom1.dict),
//     then the S2 block.
//   - escaped: 0x00 0x00 then the payload, for a payload that starts with
//     0x00 itself (not XML; kept as it came, never misread as packed).
//
// The dictionary of a codec byte is frozen: stored rows depend on it
// byte for byte (TestDictionaryFrozen). A better dictionary is a new codec
// byte, and Unpack keeps reading the old ones.
//
// The package has no mutable state; its functions are safe for
// concurrent use.
package payloadcodec

import (
	_ "embed"
	"errors"
	"fmt"

	"github.com/klauspost/compress/s2"
)

// Codec bytes.
const (
	codecEscaped = 0 // the payload follows as it is
	codecAtom1   = 1 // S2 with the atom1.dict dictionary
)

// minSaving is the fewest bytes packing must save for a payload to be
// stored packed (below it, raw XML is as small and costs nothing to read).
const minSaving = 16

//go:embed atom1.dict
var atom1Dict []byte

// atom1 is the S2 dictionary of codecAtom1 (immutable once built).
var atom1 = s2.NewDict(append([]byte{0}, atom1Dict...))

// ErrDamaged is wrapped by Unpack's error when stored bytes are not a
// payload this package wrote.
var ErrDamaged = errors.New("stored payload is damaged")

// Pack returns the stored form of payload: packed when that saves at least
// minSaving bytes, else payload itself (escaped if it starts with 0x00).
func Pack(payload []byte) []byte {
	if len(payload) > 0 && payload[0] == 0 {
		return append([]byte{0, codecEscaped}, payload...)
	}
	if len(payload) < 2*minSaving {
		return payload
	}
	dst := make([]byte, 2+s2.MaxEncodedLen(len(payload)))
	dst[1] = codecAtom1
	block := atom1.Encode(dst[2:], payload)
	if len(block)+2+minSaving > len(payload) {
		return payload
	}
	return dst[:2+len(block)]
}

// Unpack returns the payload of a stored form written by Pack (or of a raw
// payload stored before packing, returned as it is).
func Unpack(stored []byte) ([]byte, error) {
	if len(stored) == 0 || stored[0] != 0 {
		return stored, nil
	}
	if len(stored) < 2 {
		return nil, fmt.Errorf("%w: %d bytes", ErrDamaged, len(stored))
	}
	switch stored[1] {
	case codecEscaped:
		return stored[2:], nil
	case codecAtom1:
		p, err := atom1.Decode(nil, stored[2:])
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrDamaged, err)
		}
		return p, nil
	default:
		return nil, fmt.Errorf("%w: unknown codec %d", ErrDamaged, stored[1])
	}
}
