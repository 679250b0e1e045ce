package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// benchToken is the API token of every server the run starts.
const benchToken = "bench-token-0123456789abcdef"

// benchPassword is the admin password of every server the run starts.
const benchPassword = "bench-password-0123"

// server is one `customstream all` process on loopback.
type server struct {
	cmd     *exec.Cmd
	url     string
	dataDir string
	client  *http.Client
	done    chan error
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startServer starts the binary with its own data directory and waits for /healthz.
func (r *run) startServer(ctx context.Context, name string, env ...string) (*server, error) {
	dataDir, err := r.dir(name)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(r.Bin, "all")
	cmd.Env = append(os.Environ(), "CUSTOMSTREAM_ADDR="+addr, "CUSTOMSTREAM_DATA_DIR="+dataDir,
		"CUSTOMSTREAM_API_TOKEN="+benchToken, "CUSTOMSTREAM_ADMIN_PASSWORD="+benchPassword,
		"CUSTOMSTREAM_LOG_LEVEL=warn", "CUSTOMSTREAM_MIN_FREE=1MiB", "REDIS_URL=")
	cmd.Env = append(cmd.Env, env...)
	logFile, err := os.Create(filepath.Join(r.Work, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", r.Bin, err)
	}
	s := &server{cmd: cmd, url: "http://" + addr, dataDir: dataDir, done: make(chan error, 1),
		client: &http.Client{Timeout: 10 * time.Minute}}
	go func() { s.done <- cmd.Wait(); logFile.Close() }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		res, err := s.client.Get(s.url + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case err := <-s.done:
			return nil, fmt.Errorf("%s exited at start (%v): see %s.log", name, err, name)
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	s.stop()
	return nil, fmt.Errorf("%s did not answer /healthz within 30 s", name)
}

// stop ends the server by its PID: SIGTERM, then SIGKILL after 20 s.
func (s *server) stop() {
	if s != nil {
		stopProcess(s.cmd, s.done, syscall.SIGTERM, 20*time.Second)
	}
}

// stopProcess sends cmd's process sig and waits for done (its Wait), with
// a SIGKILL when it has not ended after grace.
func stopProcess(cmd *exec.Cmd, done <-chan error, sig syscall.Signal, grace time.Duration) {
	if cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// api sends a JSON request with the token and decodes the JSON answer into out.
func (s *server) api(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+benchToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if res.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, path, res.Status, strings.TrimSpace(string(data)))
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// waitJobs polls until every job has ended and fails unless all succeeded.
func (s *server) waitJobs(ctx context.Context, ids []string) error {
	for _, id := range ids {
		for {
			var job struct {
				State string `json:"state"`
				Error string `json:"error"`
			}
			if err := s.api(http.MethodGet, "/api/jobs/"+id, nil, &job); err != nil {
				return err
			}
			if job.State == "succeeded" {
				break
			}
			if job.State == "failed" || job.State == "canceled" {
				return fmt.Errorf("job %s %s: %s", id, job.State, job.Error)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}

// procStatus reads a field of /proc/PID/status in KiB (VmRSS, VmHWM).
func procStatus(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == field {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// cpuTime is the user plus system time the process has used.
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which may hold spaces, in parentheses.
	rest := string(data[bytes.LastIndexByte(data, ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, errors.New("short /proc/PID/stat")
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond, nil
}

// timed runs a command and returns its wall time.
func timed(ctx context.Context, name string, args ...string) (time.Duration, []byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	d := time.Since(start)
	if err != nil {
		return d, out, fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return d, out, nil
}

// bestOf runs f n times and keeps the shortest time: the run least disturbed.
func bestOf(n int, f func() (time.Duration, error)) (time.Duration, error) {
	var best time.Duration
	for i := 0; i < n; i++ {
		d, err := f()
		if err != nil {
			return 0, err
		}
		if i == 0 || d < best {
			best = d
		}
	}
	return best, nil
}

var wrkRate = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)

// wrk runs wrk against url and returns requests per second.
func (r *run) wrk(ctx context.Context, url string, conns int) (float64, error) {
	threads := min(2, conns)
	_, out, err := timed(ctx, "wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", fmt.Sprintf("%ds", r.Sizes.WrkSeconds), url)
	if err != nil {
		return 0, err
	}
	m := wrkRate.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("wrk printed no rate: %s", out)
	}
	if bytes.Contains(out, []byte("Non-2xx")) {
		return 0, fmt.Errorf("wrk got error answers from %s: %s", url, out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// curlGet downloads url to dst (or discards it) and returns the wall time.
func curlGet(ctx context.Context, url, dst string) (time.Duration, error) {
	d, _, err := timed(ctx, "curl", "-sSf", "-o", dst, url)
	return d, err
}
