package web

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// serve runs the app on a loopback listener until the test ends.
func (e *testEnv) serve(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go e.app.Listener(ln)
	// Closing the listener ends Listener; fasthttp's Shutdown races with
	// connections still being served (go test -race says so).
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// send opens a connection to addr and writes raw to it.
func send(t *testing.T, addr, raw string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	_, err = io.WriteString(conn, raw)
	require.NoError(t, err)
	return conn
}

// closedWithin reports whether the server closes conn before limit, and
// what it sent first. The limit is a bound against hanging, not a speed
// measure: the server's own timeouts are a fraction of it.
func closedWithin(t *testing.T, conn net.Conn, limit time.Duration) (bool, string) {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(limit)))
	data, err := io.ReadAll(conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false, string(data)
	}
	return true, string(data)
}

// TestSlowClients: a client that sends its headers too slowly, or stops in
// the middle of an upload, is cut off, and the upload leaves nothing behind.
func TestSlowClients(t *testing.T) {
	e := newTestEnv(t, 1<<30, func(d *Deps) {
		d.HeaderTimeout = 300 * time.Millisecond
		d.BodyIdleTimeout = 300 * time.Millisecond
	})
	addr := e.serve(t)

	t.Run("headers never finish", func(t *testing.T) {
		conn := send(t, addr, fmt.Sprintf("GET /healthz HTTP/1.1\r\nHost: %s\r\nX-Slow: ", addr))
		closed, _ := closedWithin(t, conn, 10*time.Second)
		assert.True(t, closed, "the server still waits for the headers")
	})

	t.Run("upload body stalls", func(t *testing.T) {
		body := "--b\r\nContent-Disposition: form-data; name=\"os\"\r\n\r\nubuntu\r\n" +
			"--b\r\nContent-Disposition: form-data; name=\"kernel\"; filename=\"k\"\r\n\r\n" + strings.Repeat("k", 64<<10)
		conn := send(t, addr, fmt.Sprintf("POST /api/images/upload HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"+
			"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: %d\r\n\r\n%s", addr, testToken, len(body)+(1<<20), body))
		// The rest of the declared body never comes.
		closed, answer := closedWithin(t, conn, 10*time.Second)
		assert.True(t, closed, "the server still waits for the body")
		if answer != "" {
			status, _ := bufio.NewReader(strings.NewReader(answer)).ReadString('\n')
			assert.Contains(t, status, "400", answer)
		}
		assert.Eventually(t, func() bool { return len(e.stagingFiles(t)) == 0 }, 10*time.Second, 50*time.Millisecond,
			"the stalled upload's file is removed")
		imgs, err := e.Store.ListImages()
		require.NoError(t, err)
		assert.Empty(t, imgs)
	})

	t.Run("a steady client is served", func(t *testing.T) {
		conn := send(t, addr, fmt.Sprintf("GET /healthz HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", addr))
		closed, answer := closedWithin(t, conn, 10*time.Second)
		assert.True(t, closed)
		assert.True(t, strings.HasPrefix(answer, "HTTP/1.1 200"), answer)
	})
}

// TestSlowSteadyUpload: an upload that keeps coming is not cut off when it
// takes longer than the header time-out. (fasthttp reads bodies up to
// BodyLimit, 4 MiB, before the handler, under the header time-out; larger
// ones are streamed, as here.)
func TestSlowSteadyUpload(t *testing.T) {
	e := newTestEnv(t, 1<<30, func(d *Deps) {
		d.HeaderTimeout = 300 * time.Millisecond
		d.BodyIdleTimeout = 3 * time.Second
	})
	addr := e.serve(t)
	files := bootFileParts()
	files[0].value = strings.Repeat("k", 5<<20)
	body, ct := form(t, bootFields(), files)
	data, err := io.ReadAll(body)
	require.NoError(t, err)

	conn := send(t, addr, fmt.Sprintf("POST /api/images/upload HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nConnection: close\r\n"+
		"Content-Type: %s\r\nContent-Length: %d\r\n\r\n", addr, testToken, ct, len(data)))
	// Ten pieces 100 ms apart: a whole second, over three header time-outs.
	step := len(data)/10 + 1
	for off := 0; off < len(data); off += step {
		time.Sleep(100 * time.Millisecond)
		_, err := conn.Write(data[off:min(off+step, len(data))])
		require.NoError(t, err)
	}
	closed, answer := closedWithin(t, conn, 10*time.Second)
	assert.True(t, closed)
	assert.True(t, strings.HasPrefix(answer, "HTTP/1.1 202"), answer)
}

// TestUploadLargerThanTheDisk: an upload whose declared size cannot fit is
// refused before any of it is written.
func TestUploadLargerThanTheDisk(t *testing.T) {
	e := newTestEnv(t, 1<<62)
	addr := e.serve(t)
	// fasthttp reads the first BodyLimit (4 MiB) before the handler runs.
	body := "--b\r\nContent-Disposition: form-data; name=\"os\"\r\n\r\nubuntu\r\n" +
		"--b\r\nContent-Disposition: form-data; name=\"rootfs\"; filename=\"r\"\r\n\r\n" + strings.Repeat("r", 5<<20)
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	// The server answers and closes before the body is sent: the write may
	// fail, the answer is what counts.
	go fmt.Fprintf(conn, "POST /api/images/upload HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: %d\r\n\r\n%s", addr, testToken, int64(1)<<60, body)
	closed, answer := closedWithin(t, conn, 10*time.Second)
	assert.True(t, closed)
	assert.True(t, strings.HasPrefix(answer, "HTTP/1.1 507"), answer)
	assert.Contains(t, answer, "not enough space: the upload is 1.0 EiB")
	assert.Empty(t, e.stagingFiles(t))
}
