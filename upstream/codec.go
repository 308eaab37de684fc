package upstream

import (
	"bytes"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Content encodings the client sends and decodes.
const (
	EncodingIdentity = ""
	EncodingGzip     = "gzip"
	EncodingZstd     = "zstd"
)

// MinCompressSize is the body size below which a request travels uncompressed: a single
// small entry shrinks by fewer bytes than the Content-Encoding header and the codec's framing
// cost (docs/DESIGN.md appendix C: one entry alone compresses ~600 B to ~370 B, headers then dominate).
const MinCompressSize = 256

// maxDecodedSize bounds a decoded response, against a decompression bomb from a broken or
// hostile front end.
const maxDecodedSize = 256 << 20

// zstdWindow is RFC 9659's limit for HTTP zstd: decoders must accept 8 MB windows, encoders
// should not use more.
const zstdWindow = 8 << 20

// codec compresses and decodes bodies. Its zstd encoder and decoder are made on first use
// and kept (each costs allocations worth reusing between batches); the zero value is ready.
type codec struct {
	once sync.Once
	enc  *zstd.Encoder
	dec  *zstd.Decoder
	err  error
}

func (c *codec) zstd() (*zstd.Encoder, *zstd.Decoder, error) {
	c.once.Do(func() {
		c.enc, c.err = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedBetterCompression),
			zstd.WithWindowSize(zstdWindow),
			zstd.WithEncoderConcurrency(1))
		if c.err != nil {
			return
		}
		c.dec, c.err = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxWindow(zstdWindow),
			zstd.WithDecoderMaxMemory(maxDecodedSize))
	})
	return c.enc, c.dec, c.err
}

// Compress returns body encoded with encoding ("" returns it as is).
func Compress(encoding string, body []byte) ([]byte, error) {
	var c codec
	defer c.close()
	return c.compress(encoding, body)
}

// Decompress decodes body by its Content-Encoding ("" and "identity" as is).
func Decompress(encoding string, body []byte) ([]byte, error) {
	var c codec
	defer c.close()
	return c.decompress(encoding, body)
}

func (c *codec) close() {
	if c.dec != nil {
		c.dec.Close()
	}
	if c.enc != nil {
		c.enc.Close()
	}
}

func (c *codec) compress(encoding string, body []byte) ([]byte, error) {
	switch encoding {
	case EncodingIdentity:
		return body, nil
	case EncodingGzip:
		var buf bytes.Buffer
		w, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(body); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	case EncodingZstd:
		enc, _, err := c.zstd()
		if err != nil {
			return nil, err
		}
		return enc.EncodeAll(body, make([]byte, 0, len(body)/4+64)), nil
	}
	return nil, fmt.Errorf("unknown content encoding %q", encoding)
}

func (c *codec) decompress(encoding string, body []byte) ([]byte, error) {
	switch encoding {
	case EncodingIdentity, "identity":
		return body, nil
	case EncodingGzip, "x-gzip":
		r, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		defer r.Close()
		out, err := io.ReadAll(io.LimitReader(r, maxDecodedSize+1))
		if err != nil {
			return nil, err
		}
		if len(out) > maxDecodedSize {
			return nil, fmt.Errorf("decoded body over %d bytes", maxDecodedSize)
		}
		return out, nil
	case EncodingZstd:
		_, dec, err := c.zstd()
		if err != nil {
			return nil, err
		}
		return dec.DecodeAll(body, nil)
	}
	return nil, fmt.Errorf("unknown content encoding %q", encoding)
}

// chooseEncoding picks the request encoding from what the receiver advertises: zstd when
// offered, else gzip (always available on the ERP5 side).
func chooseEncoding(offered []string) string {
	for _, e := range offered {
		if e == EncodingZstd {
			return EncodingZstd
		}
	}
	return EncodingGzip
}

// encodeBody compresses body with encoding unless it is too small for that to pay, and
// returns the bytes to send and the Content-Encoding header value ("" for none).
func (c *codec) encodeBody(encoding string, body []byte) ([]byte, string, error) {
	if encoding == EncodingIdentity || len(body) < MinCompressSize {
		return body, "", nil
	}
	out, err := c.compress(encoding, body)
	if err != nil {
		return nil, "", err
	}
	// The header "Content-Encoding: zstd\r\n" costs ~24 bytes.
	if len(out)+24 >= len(body) {
		return body, "", nil
	}
	return out, encoding, nil
}
