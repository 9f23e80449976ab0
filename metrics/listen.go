package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mynet/mynet/server"
)

// Addr is where --metrics serves: a unix socket (Path) or a TCP host:port.
type Addr struct {
	Path string // unix socket, when set
	TCP  string // host:port otherwise
}

// ParseAddr reads the --metrics value: unix:/abs/path.sock or host:port.
func ParseAddr(s string) (Addr, error) {
	if p, ok := strings.CutPrefix(s, "unix:"); ok {
		if !strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
			return Addr{}, fmt.Errorf("--metrics %q: give an absolute socket path, e.g. unix:/run/mynet/metrics.sock", s)
		}
		return Addr{Path: p}, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err == nil {
		var n int
		if n, err = strconv.Atoi(port); err == nil && (n < 1 || n > 65535) {
			err = errors.New("port out of range")
		}
	}
	if err == nil && host != "" && net.ParseIP(host) == nil && host != "localhost" {
		err = errors.New("host is not an IP address or localhost")
	}
	if err != nil {
		return Addr{}, fmt.Errorf("--metrics %q: %v; give unix:/path.sock or host:port (e.g. 127.0.0.1:9323)", s, err)
	}
	return Addr{TCP: s}, nil
}

func (a Addr) String() string {
	if a.Path != "" {
		return "unix:" + a.Path
	}
	return a.TCP
}

// Listen opens a: a unix socket with mode 0600 (as the plugin socket), or
// TCP, which it logs since anyone who reaches the port can read the metrics.
func Listen(a Addr, log *slog.Logger) (net.Listener, error) {
	if a.Path != "" {
		ln, err := server.Listen(a.Path)
		if err != nil {
			return nil, fmt.Errorf("--metrics %s: %w", a, err)
		}
		return ln, nil
	}
	ln, err := net.Listen("tcp", a.TCP)
	if err != nil {
		return nil, fmt.Errorf("--metrics %s: %w", a.TCP, err)
	}
	log.Warn("metrics served over TCP, as --metrics asked: anyone who can reach this address can read them", "addr", ln.Addr().String())
	return ln, nil
}

// Serve answers GET /metrics on ln until ctx ends, then closes it (a unix
// socket from Listen removes itself).
func Serve(ctx context.Context, ln net.Listener, m *Metrics) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
