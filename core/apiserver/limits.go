package apiserver

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"connectrpc.com/connect"
)

// MaxConcurrentStreams bounds the HTTP/2 streams of one API connection.
const MaxConcurrentStreams = 100

// HandlerOptions are the options every Connect handler of the API is built
// with: requests are read up to maxBytes (api.max_request_bytes) after
// decompression, and gzip stops inflating as soon as it passes the bound
// (a compression bomb costs neither memory nor the CPU of inflating it
// whole). A larger request gets resource_exhausted naming the limit.
func HandlerOptions(maxBytes int64) []connect.HandlerOption {
	return []connect.HandlerOption{
		connect.WithReadMaxBytes(int(maxBytes)),
		connect.WithCompression("gzip",
			func() connect.Decompressor { return &boundedGzip{limit: maxBytes + 1} },
			func() connect.Compressor { return gzip.NewWriter(io.Discard) }),
	}
}

// ErrRequestTooLarge is the cause of a refusal of a request larger than
// api.max_request_bytes.
var ErrRequestTooLarge = errors.New("request larger than api.max_request_bytes")

// boundedGzip is a gzip reader that fails once it has produced more than
// limit bytes. Connect reads limit (its own bound + 1) bytes, then drains
// the rest to report the size: the error stops that drain.
type boundedGzip struct {
	zr    *gzip.Reader
	limit int64
	n     int64
}

func (b *boundedGzip) Read(p []byte) (int, error) {
	if b.zr == nil {
		return 0, io.EOF
	}
	if b.n >= b.limit {
		return 0, fmt.Errorf("%w (%d bytes): it inflates beyond the limit", ErrRequestTooLarge, b.limit-1)
	}
	if rest := b.limit - b.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := b.zr.Read(p)
	b.n += int64(n)
	return n, err
}

func (b *boundedGzip) Close() error {
	if b.zr == nil {
		return nil
	}
	return b.zr.Close()
}

func (b *boundedGzip) Reset(r io.Reader) error {
	b.n = 0
	if b.zr == nil {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return err
		}
		b.zr = zr
		return nil
	}
	return b.zr.Reset(r)
}

// limitBodies bounds what one request may send before Connect reads it.
// A Connect unary request (the form browsers and scripts use) is read here,
// gzip inflated, into one buffer shared by every route and bounded by the
// limit: a larger one (declared, sent, or inflated) is refused at once with
// resource_exhausted naming the key, and only requests within the limit
// reach Connect, as exact bytes. Every other body (gRPC, streaming
// envelopes) is cut by an http.MaxBytesReader a little above the limit, and
// Connect bounds its messages (see HandlerOptions).
func limitBodies(maxBytes int64, h http.Handler) http.Handler {
	raw := maxBytes + maxBytes/64 + 4096 // envelopes, incompressible gzip
	bufs := sync.Pool{New: func() any { b := make([]byte, maxBytes+1); return &b }}
	tooLarge := func(w http.ResponseWriter, why string) {
		writeConnectError(w, http.StatusTooManyRequests, "resource_exhausted", fmt.Sprintf("%v (%d bytes): %s", ErrRequestTooLarge, maxBytes, why))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			h.ServeHTTP(w, r)
			return
		}
		enc := r.Header.Get("Content-Encoding")
		if enveloped(r) {
			// One request message, in envelopes (Connect streaming, gRPC):
			// read and inflated here too, so that neither a large nor a
			// compressed message reaches a route's own buffers. Connect
			// answers refusals in the request's protocol: a message too
			// large becomes the header of one (it refuses it from its
			// size), a malformed body goes as it came.
			body, tooBig := readEnvelopes(r, &bufs, maxBytes, raw, w)
			if tooBig {
				n := maxBytes + 1
				body = []byte{0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
			r.Header.Del("Connect-Content-Encoding")
			r.Header.Del("Grpc-Encoding")
			h.ServeHTTP(w, r)
			return
		}
		if !connectUnary(r) || enc != "" && enc != "identity" && enc != "gzip" {
			r.Body = http.MaxBytesReader(w, r.Body, raw)
			h.ServeHTTP(w, r)
			return
		}
		if r.ContentLength > raw {
			tooLarge(w, fmt.Sprintf("the request body has %d bytes", r.ContentLength))
			return
		}
		var body io.Reader = http.MaxBytesReader(w, r.Body, raw)
		if enc == "gzip" {
			zr, err := gzip.NewReader(body)
			if err != nil {
				writeConnectError(w, http.StatusBadRequest, "invalid_argument", "request body is not gzip: "+err.Error())
				return
			}
			defer zr.Close()
			body = zr
		}
		bp := bufs.Get().(*[]byte)
		defer bufs.Put(bp)
		n, err := io.ReadFull(body, *bp)
		switch {
		case err == nil: // the buffer is full: one byte more than allowed
			tooLarge(w, "the request is larger")
			return
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		default:
			var mb *http.MaxBytesError
			if errors.As(err, &mb) {
				tooLarge(w, "the request body is larger")
				return
			}
			writeConnectError(w, http.StatusBadRequest, "invalid_argument", "read request body: "+err.Error())
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(bytes.Clone((*bp)[:n])))
		r.ContentLength = int64(n)
		r.Header.Del("Content-Encoding")
		h.ServeHTTP(w, r)
	})
}

// enveloped reports whether r carries its request message in envelopes
// (Connect streaming, gRPC, gRPC-Web) on a route whose client sends one
// message and closes (every route of the API but reflection's, whose
// stream goes both ways).
func enveloped(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return r.Method == http.MethodPost && !strings.HasPrefix(r.URL.Path, "/grpc.reflection.") &&
		(strings.HasPrefix(ct, "application/connect+") || strings.HasPrefix(ct, "application/grpc"))
}

// readEnvelopes reads an enveloped request body (at most raw bytes) and
// returns it with every message inflated and marked uncompressed; tooBig
// when the body or a message (inflated) is larger than maxBytes. A body it
// cannot read as envelopes is returned as it was read.
func readEnvelopes(r *http.Request, bufs *sync.Pool, maxBytes, raw int64, w http.ResponseWriter) (body []byte, tooBig bool) {
	if r.ContentLength > raw {
		return nil, true
	}
	enc := r.Header.Get("Connect-Content-Encoding")
	if enc == "" {
		enc = r.Header.Get("Grpc-Encoding")
	}
	in, err := io.ReadAll(http.MaxBytesReader(w, r.Body, raw))
	if err != nil {
		var mb *http.MaxBytesError
		return in, errors.As(err, &mb)
	}
	orig := in
	var out bytes.Buffer
	for len(in) > 0 {
		if len(in) < 5 {
			return orig, false
		}
		flags, size := in[0], int64(in[1])<<24|int64(in[2])<<16|int64(in[3])<<8|int64(in[4])
		if size > maxBytes {
			return nil, true
		}
		if size > int64(len(in)-5) {
			return orig, false
		}
		msg := in[5 : 5+size]
		in = in[5+size:]
		if flags&1 != 0 {
			if enc != "gzip" {
				return orig, false
			}
			zr, err := gzip.NewReader(bytes.NewReader(msg))
			if err != nil {
				return orig, false
			}
			bp := bufs.Get().(*[]byte)
			n, err := io.ReadFull(zr, *bp)
			zr.Close()
			if err == nil {
				bufs.Put(bp)
				return nil, true // the buffer is full: it inflates beyond
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				bufs.Put(bp)
				return orig, false
			}
			msg = bytes.Clone((*bp)[:n])
			bufs.Put(bp)
			flags &^= 1
		}
		out.WriteByte(flags)
		out.Write([]byte{byte(len(msg) >> 24), byte(len(msg) >> 16), byte(len(msg) >> 8), byte(len(msg))})
		out.Write(msg)
	}
	return out.Bytes(), false
}

// connectUnary reports whether r uses the Connect protocol's unary form
// (whose errors are plain JSON bodies).
func connectUnary(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return r.Method == http.MethodPost && (strings.HasPrefix(ct, "application/proto") || strings.HasPrefix(ct, "application/json"))
}

func writeConnectError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Connection", "close")
	w.WriteHeader(status)
	body, _ := json.Marshal(map[string]string{"code": code, "message": msg})
	w.Write(body)
}
