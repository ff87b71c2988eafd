package payloadcodec

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/klauspost/compress/s2"
)

// codecPayloadDict is the codec byte of a parsed JSON document packed
// with S2 primed with the item's own payload (unpacked XML): most strings
// of a parser's output are copied from the payload, so the payload is the
// best dictionary there is and needs no freezing (it is stored beside).
// The form is 0x00, 2, the CRC-32C of the JSON (4 bytes, little endian),
// then the S2 block: a block decoded with another payload than the one
// it was packed with (a payload damaged but still readable) decodes to
// other bytes without an error, which the checksum catches.
const codecPayloadDict = 2

// parsedHeader is the length of the marker, codec byte and checksum.
const parsedHeader = 6

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// PackParsed returns the stored form of an item's parsed JSON (on SQLite;
// PostgreSQL keeps jsonb): packed with the item's payload as S2
// dictionary when that saves at least minSaving bytes, else the JSON
// itself. JSON text never starts with 0x00, so the two forms never mix
// up; rows written before packing (raw JSON) are read as they are.
func PackParsed(parsed, payload []byte) []byte {
	if len(parsed) < 2*minSaving || len(parsed) > 0 && parsed[0] == 0 {
		return parsed
	}
	d := payloadDict(payload)
	if d == nil {
		return parsed
	}
	dst := make([]byte, parsedHeader+s2.MaxEncodedLen(len(parsed)))
	dst[1] = codecPayloadDict
	binary.LittleEndian.PutUint32(dst[2:], crc32.Checksum(parsed, castagnoli))
	block := d.Encode(dst[parsedHeader:], parsed)
	if len(block)+parsedHeader+minSaving > len(parsed) {
		return parsed
	}
	return dst[:parsedHeader+len(block)]
}

// UnpackParsed returns the parsed JSON of a stored form written by
// PackParsed for an item whose payload (unpacked) is payload. A raw form
// is returned as it is.
func UnpackParsed(stored, payload []byte) ([]byte, error) {
	if len(stored) == 0 || stored[0] != 0 {
		return stored, nil
	}
	if len(stored) < parsedHeader || stored[1] != codecPayloadDict {
		return nil, fmt.Errorf("%w: parsed data of %d bytes, not a known stored form", ErrDamaged, len(stored))
	}
	d := payloadDict(payload)
	if d == nil {
		return nil, fmt.Errorf("%w: parsed data packed with a payload of %d bytes", ErrDamaged, len(payload))
	}
	p, err := d.Decode(nil, stored[parsedHeader:])
	if err != nil {
		return nil, fmt.Errorf("%w: parsed data: %v", ErrDamaged, err)
	}
	if crc32.Checksum(p, castagnoli) != binary.LittleEndian.Uint32(stored[2:]) {
		return nil, fmt.Errorf("%w: parsed data does not match its checksum (payload changed or bytes damaged)", ErrDamaged)
	}
	return p, nil
}

// payloadDict is the S2 dictionary of a payload: its last MaxDictSize
// bytes (nil when shorter than MinDictSize).
func payloadDict(payload []byte) *s2.Dict {
	if len(payload) < s2.MinDictSize {
		return nil
	}
	if len(payload) > s2.MaxDictSize {
		payload = payload[len(payload)-s2.MaxDictSize:]
	}
	return s2.NewDict(append([]byte{0}, payload...))
}
