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
