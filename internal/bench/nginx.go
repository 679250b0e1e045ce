package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// site is one nginx server block: a root served on a loopback port.
type site struct {
	root      string
	limitRate string // e.g. "20m"; empty: no cap
	port      int
	accessLog string
}

// nginx is one nginx master process the run started.
type nginx struct {
	cmd  *exec.Cmd
	done chan error
}

// startNginx starts Debian's nginx with sendfile on, serving each site on
// its own loopback port, in the foreground so its PID is ours to stop.
func (r *run) startNginx(ctx context.Context, name string, sites []*site) (*nginx, error) {
	prefix, err := r.dir(name)
	if err != nil {
		return nil, err
	}
	var conf strings.Builder
	// The work directory is private to root: the workers run as root too.
	fmt.Fprintf(&conf, `daemon off;
master_process on;
user root;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
	sendfile on;
	tcp_nopush on;
	keepalive_requests 100000;
	types { application/json json; }
	default_type application/octet-stream;
	log_format bytes '$request_uri $status $body_bytes_sent';
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
`, prefix)
	for i, s := range sites {
		if s.port, err = freePort(); err != nil {
			return nil, err
		}
		s.accessLog = filepath.Join(prefix, fmt.Sprintf("access-%d.log", i))
		limit := ""
		if s.limitRate != "" {
			limit = "limit_rate " + s.limitRate + ";"
		}
		fmt.Fprintf(&conf, "\tserver {\n\t\tlisten 127.0.0.1:%d;\n\t\troot %s;\n\t\taccess_log %s bytes;\n\t\tlocation / { %s }\n\t}\n",
			s.port, s.root, s.accessLog, limit)
	}
	conf.WriteString("}\n")
	confPath := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command("nginx", "-c", confPath, "-p", prefix, "-e", filepath.Join(prefix, "error.log"))
	logFile, err := os.Create(filepath.Join(prefix, "stderr.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	n := &nginx{cmd: cmd, done: make(chan error, 1)}
	go func() { n.done <- cmd.Wait(); logFile.Close() }()
	for _, s := range sites {
		if err := waitPort(ctx, s.port, n.done); err != nil {
			n.stop()
			out, _ := os.ReadFile(filepath.Join(prefix, "stderr.log"))
			return nil, fmt.Errorf("nginx: %w: %s", err, out)
		}
	}
	return n, nil
}

// waitPort waits until something accepts on the loopback port.
func waitPort(ctx context.Context, port int, exited chan error) error {
	for i := 0; i < 100; i++ {
		if c, err := (&net.Dialer{}).DialContext(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			c.Close()
			return nil
		}
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("exited at start: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("nothing listens on port %d after 5 s", port)
}

// stop ends nginx by its master's PID: SIGQUIT lets the workers finish.
func (n *nginx) stop() {
	if n != nil {
		stopProcess(n.cmd, n.done, syscall.SIGQUIT, 10*time.Second)
	}
}

// servedBytes sums the body bytes an nginx access log records from line
// skip on, and returns the number of lines.
func servedBytes(path string, skip int, keep func(uri string) bool) (total int64, lines int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines++
		if lines <= skip {
			continue
		}
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 || !keep(fields[0]) {
			continue
		}
		n, err := strconv.ParseInt(fields[2], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("access log line %q: %w", sc.Text(), err)
		}
		total += n
	}
	return total, lines, sc.Err()
}

// ensureTools installs nginx and wrk from Debian when they are missing and
// the run is root; policy-rc.d keeps the package from starting a service.
func ensureTools(ctx context.Context, log func(string, ...any)) error {
	var missing []string
	for _, tool := range []string{"nginx", "wrk", "curl", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("missing %s: install them (apt-get install %s) or run as root", strings.Join(missing, ", "), strings.Join(missing, " "))
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("missing %s and no apt-get to install them", strings.Join(missing, ", "))
	}
	log("installing %s with apt-get", strings.Join(missing, " "))
	const policy = "/usr/sbin/policy-rc.d"
	if _, err := os.Stat(policy); os.IsNotExist(err) {
		// Keep Debian's nginx package from starting its own service on port 80.
		if err := os.WriteFile(policy, []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
			return err
		}
		defer os.Remove(policy)
	}
	for _, args := range [][]string{{"update", "-q"}, append([]string{"install", "-y", "-q"}, missing...)} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// EnsureTools is ensureTools for the command.
func EnsureTools(ctx context.Context, o Options) error {
	r := &run{Options: o}
	return ensureTools(ctx, r.logf)
}
