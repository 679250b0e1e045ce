package main

// Helpers of the integration tests: they build the real binary once and run
// it, and redis-server, as separate processes on loopback.

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// binary is the customstream binary TestMain builds; empty under -short.
var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "customstream-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration tests:", err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "customstream")
	build := exec.Command("go", "build", "-o", binary, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "integration tests: go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// integration skips t under -short: it runs real processes.
func integration(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: runs the real binary and redis-server (not with -short)")
	}
}

// freeAddr returns a loopback host:port that nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// proc is one child process; its output goes to a log file that is printed
// when the test fails.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed once the process has exited
}

// startProc starts name (for logs) as bin args with exactly env, and stops
// it (by PID) when the test ends.
func startProc(t *testing.T, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	require.NoError(t, cmd.Start(), "start %s", name)
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	// Cleanups run last-in first-out: the process stops before its log is read.
	t.Cleanup(func() {
		if t.Failed() {
			data, _ := os.ReadFile(logPath)
			t.Logf("---- log of %s (pid %d) ----\n%s---- end of %s ----", name, cmd.Process.Pid, data, name)
		}
	})
	t.Cleanup(func() { p.stop(t) })
	return p
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL when the process is still there after a few seconds.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(8 * time.Second):
	}
	t.Logf("%s (pid %d) did not stop within 8 s of SIGTERM: killing it", p.name, p.cmd.Process.Pid)
	p.kill9(t)
}

// kill9 kills the process with SIGKILL, as a crash would, and waits for it to be gone.
func (p *proc) kill9(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s (pid %d) still runs 10 s after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

// redisServer is a redis-server without persistence on a loopback port.
type redisServer struct {
	addr string
	dir  string
	proc *proc
}

// URL is the REDIS_URL of the server.
func (r *redisServer) URL() string { return "redis://" + r.addr + "/0" }

// startRedis starts a real redis-server, or skips t when none is installed.
func startRedis(t *testing.T) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("!!!!!!!! redis-server not installed: install Debian's redis-server; integration test skipped !!!!!!!!")
	}
	r := &redisServer{addr: freeAddr(t), dir: t.TempDir()}
	r.start(t)
	return r
}

// start (re)starts the server on the same port, with an empty data set.
func (r *redisServer) start(t *testing.T) {
	t.Helper()
	_, port, err := net.SplitHostPort(r.addr)
	require.NoError(t, err)
	r.proc = startProc(t, "redis-server-"+port, []string{"PATH=" + os.Getenv("PATH")}, "redis-server",
		"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", r.dir)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if redisPing(r.addr) {
			return
		}
		require.False(t, r.proc.exited(), "redis-server on %s exited at start", r.addr)
		require.True(t, time.Now().Before(deadline), "redis-server on %s does not answer PING", r.addr)
		time.Sleep(50 * time.Millisecond)
	}
}

// redisPing sends PING in RESP and wants +PONG back.
func redisPing(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.TrimSpace(line) == "+PONG"
}

// server is one customstream process and how to reach it.
type server struct {
	cmd     string // all, web or worker
	addr    string
	dataDir string
	token   string
	redis   string   // REDIS_URL; empty embeds Redis (all only)
	extra   []string // more environment, after the usual (later entries win)
	proc    *proc
}

// Base is the URL of the web server, which is also the mirror root.
func (s *server) Base() string { return "http://" + s.addr }

func (s *server) env() []string {
	return append([]string{
		"PATH=" + os.Getenv("PATH"),
		"CUSTOMSTREAM_ADDR=" + s.addr,
		"CUSTOMSTREAM_DATA_DIR=" + s.dataDir,
		"REDIS_URL=" + s.redis,
		"CUSTOMSTREAM_API_TOKEN=" + s.token,
		"CUSTOMSTREAM_MAX_UPLOAD=1GiB",
		"CUSTOMSTREAM_LOG_LEVEL=debug",
		// /healthz fails below the minimum free space (default 1 GiB): the
		// tests run on nearly full disks too (a 64 MiB tmpfs, CI machines).
		"CUSTOMSTREAM_MIN_FREE=1MiB",
	}, s.extra...)
}

// startServer starts `customstream cmd` on a fresh loopback address with
// the usual settings plus extra environment; web processes are waited for
// until /healthz answers 200.
func startServer(t *testing.T, cmd, dataDir, token, redisURL string, extra ...string) *server {
	t.Helper()
	s := &server{cmd: cmd, addr: freeAddr(t), dataDir: dataDir, token: token, redis: redisURL, extra: extra}
	s.start(t)
	return s
}

// start (re)starts the process with the same settings.
func (s *server) start(t *testing.T) {
	t.Helper()
	require.NotEmpty(t, binary, "the binary was not built")
	s.proc = startProc(t, "customstream-"+s.cmd, s.env(), binary, s.cmd)
	if s.cmd != "worker" {
		waitHealthy(t, s)
	}
}

// waitHealthy polls /healthz for up to 20 s.
func waitHealthy(t *testing.T, s *server) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	last := "no answer"
	for time.Now().Before(deadline) {
		require.False(t, s.proc.exited(), "customstream %s exited at start", s.cmd)
		resp, err := client.Get(s.Base() + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("customstream %s on %s: /healthz not 200 within 20 s (last: %s)", s.cmd, s.addr, last)
}
