package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mynet/mynet/cluster"
	"github.com/mynet/mynet/cluster/etcdtest"
)

// The cluster commands ask a daemon's admin socket, which answers from etcd.
func TestClusterHostsAndForget(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	open := func(id string, last byte) *cluster.Client {
		c, err := cluster.Open(cluster.Config{Endpoints: srv.Endpoints(), HostID: id, Log: quiet,
			Advertise: netip.AddrFrom4([4]byte{192, 0, 2, last}), LeaseTTL: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.Register(context.Background()); err != nil {
			t.Fatal(err)
		}
		return c
	}
	self, other := open("self", 1), open("other", 2)
	if _, _, err := other.Join(context.Background(), cluster.PoolSpec{Name: "blue", Subnet: netip.MustParsePrefix("10.60.0.0/24")}); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	state := serveAdmin(t, Handlers{Cluster: &ClusterHandlers{Hosts: self.Hosts, Forget: self.Forget}})

	run := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := Run(append([]string{"cluster"}, args...), state, &out, &errOut)
		return code, out.String(), errOut.String()
	}
	code, out, _ := run("hosts")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != ExitOK || len(lines) != 3 || !strings.HasPrefix(lines[0], "HOST") ||
		!strings.Contains(lines[1], "other") || !strings.Contains(lines[1], "192.0.2.2") || !strings.Contains(lines[1], "yes") || !strings.Contains(lines[1], "blue") {
		t.Fatalf("cluster hosts = %d\n%s", code, out)
	}
	code, _, errOut := run("forget", "other")
	if code != ExitError || !strings.Contains(errOut, "is alive") {
		t.Fatalf("forget of a live host = %d: %s", code, errOut)
	}
	other.Close() // revokes: dead at once
	if code, out, errOut = run("forget", "192.0.2.2"); code != ExitOK {
		t.Fatalf("forget of a dead host = %d: %s%s", code, out, errOut)
	}
	code, out, _ = run("hosts", "--json")
	var hosts []cluster.HostStatus
	if err := json.Unmarshal([]byte(out), &hosts); code != ExitOK || err != nil || len(hosts) != 1 || hosts[0].ID != "self" || !hosts[0].Alive {
		t.Fatalf("hosts after forget = %d %v\n%s", code, err, out)
	}
	if _, _, err := self.Network(ctx, "blue"); err == nil {
		t.Fatal("the forgotten host's only network is still defined")
	}
	if code, _, errOut = run("bogus"); code != ExitUsage || !strings.Contains(errOut, "usage: mynet cluster") {
		t.Fatalf("bad subcommand = %d: %s", code, errOut)
	}
}

func TestClusterCommandsWithoutCluster(t *testing.T) {
	state := serveAdmin(t, Handlers{})
	var out, errOut bytes.Buffer
	if code := Run([]string{"cluster", "hosts"}, state, &out, &errOut); code != ExitError || !strings.Contains(errOut.String(), "without --cluster") {
		t.Fatalf("cluster hosts without --cluster = %d: %s", code, errOut.String())
	}
}

// serveAdmin serves h on the admin socket of a fresh state path, which it
// returns, until the test ends.
func serveAdmin(t *testing.T, h Handlers) (statePath string) {
	t.Helper()
	statePath = filepath.Join(t.TempDir(), "mynet.db")
	ln, err := net.Listen("unix", SocketPath(statePath))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go Serve(ctx, ln, h)
	return statePath
}
