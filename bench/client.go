package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// rawConn is a minimal HTTP/1.1 client connection: requests are written as
// prepared bytes and responses parsed by hand, so that the generator costs
// far less per request than the server it drives, and every connection is
// bound to a chosen source address in 127.0.0.0/8.
type rawConn struct {
	c  net.Conn
	br *bufio.Reader
}

func dialFrom(server string, src netip.Addr) (*rawConn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", server)
	if err != nil {
		return nil, err
	}
	return &rawConn{c: c, br: bufio.NewReaderSize(c, 16<<10)}, nil
}

func (c *rawConn) Close() { _ = c.c.Close() }

// response is what the generator keeps of an answer. body aliases a
// per-connection buffer until the next request.
type response struct {
	status       int
	contentType  string
	cacheControl string
	nosniff      bool
	retryAfter   string
	close        bool
	body         []byte
}

var errMalformedHTTP = errors.New("malformed HTTP response")

// do sends req and reads one whole response within timeout.
func (c *rawConn) do(req []byte, timeout time.Duration, body *[]byte) (response, error) {
	var r response
	_ = c.c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.c.Write(req); err != nil {
		return r, err
	}
	if err := c.readStatus(&r); err != nil {
		return r, err
	}
	length, chunked, err := c.readHeaders(&r)
	if err != nil {
		return r, err
	}
	b := (*body)[:0]
	switch {
	case chunked:
		if b, err = c.readChunked(b); err != nil {
			return r, err
		}
	case length >= 0:
		if b, err = c.readLength(b, length); err != nil {
			return r, err
		}
	case r.status == 204 || r.status == 304:
	default:
		return r, fmt.Errorf("%w: no length", errMalformedHTTP)
	}
	*body = b
	r.body = b
	return r, nil
}

// readStatus reads the status line into r.status.
func (c *rawConn) readStatus(r *response) error {
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return errMalformedHTTP
	}
	r.status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return errMalformedHTTP
	}
	return nil
}

// readHeaders reads the header lines into r, and returns the body's
// Content-Length (-1 without one) and whether it is chunked.
func (c *rawConn) readHeaders(r *response) (length int, chunked bool, err error) {
	length = -1
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return length, chunked, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			return length, chunked, nil
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return length, chunked, errMalformedHTTP
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return length, chunked, errMalformedHTTP
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Content-Type")):
			r.contentType = string(value)
		case bytes.EqualFold(name, []byte("Cache-Control")):
			r.cacheControl = string(value)
		case bytes.EqualFold(name, []byte("X-Content-Type-Options")):
			r.nosniff = string(value) == "nosniff"
		case bytes.EqualFold(name, []byte("Retry-After")):
			r.retryAfter = string(value)
		case bytes.EqualFold(name, []byte("Connection")):
			r.close = bytes.EqualFold(value, []byte("close"))
		}
	}
}

// readChunked reads a chunked body, appending it to b.
func (c *rawConn) readChunked(b []byte) ([]byte, error) {
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return b, err
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 32)
		if err != nil || n < 0 {
			return b, errMalformedHTTP
		}
		if n == 0 {
			if _, err := c.br.ReadSlice('\n'); err != nil {
				return b, err
			}
			return b, nil
		}
		b = grow(b, int(n)+2)
		if _, err := io.ReadFull(c.br, b[len(b):len(b)+int(n)+2]); err != nil {
			return b, err
		}
		b = b[:len(b)+int(n)]
	}
}

// readLength reads a body of length bytes (at most 1 MiB) into b.
func (c *rawConn) readLength(b []byte, length int) ([]byte, error) {
	if length > 1<<20 {
		return b, errMalformedHTTP
	}
	b = grow(b, length)
	if _, err := io.ReadFull(c.br, b[:length]); err != nil {
		return b, err
	}
	return b[:length], nil
}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), len(b)+n+512)
		copy(nb, b)
		return nb
	}
	return b
}

// buildRequest returns an HTTP/1.1 request as bytes.
func buildRequest(method, path string, headers [][2]string, body string) []byte {
	b := fmt.Appendf(nil, "%s %s HTTP/1.1\r\nHost: load.test\r\n", method, path)
	for _, h := range headers {
		b = fmt.Appendf(b, "%s: %s\r\n", h[0], h[1])
	}
	if body != "" || method == "POST" {
		b = fmt.Appendf(b, "Content-Length: %d\r\n", len(body))
	}
	b = append(b, "\r\n"...)
	return append(b, body...)
}
