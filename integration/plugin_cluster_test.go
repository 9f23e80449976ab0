//go:build integration

package integration

// The managed plugin in a cluster: a real etcd over TLS with client
// certificates required (cluster/etcdtest), its CA and client pair copied
// into the plugin's state mount, MYNET_CLUSTER and its companions set with
// `docker plugin set`. First with a CA that did not sign etcd's certificate
// (the user must see a message naming etcd, and nothing may be left in
// Docker or etcd), then with the right one: the host registers, a network
// with --ipam-opt network=NAME joins the cluster network, a container's
// address is claimed in etcd, `docker rm` leaves it as a cooling-down
// tombstone, `docker network rm` (the last host leaving) removes the
// cluster network, and `docker plugin disable` withdraws the host's
// liveness while its durable record stays.
//
// Names: plugin mynetpt:latest (ptCreate), network mit-pc-br joining cluster
// network mit-pc-net, containers mit-pc-*, veth mit-pcadv carrying
// the advertise address (mynet refuses a loopback one).

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mynet/mynet/cluster"
	"github.com/mynet/mynet/cluster/etcdtest"
)

const (
	pcClusterNet = "mit-pc-net"
	pcAdvLink    = "mit-pcadv"
)

// pcAdvertise is the address the plugin advertises: on a dummy link of the
// test's own, because mynet refuses a loopback --advertise and nothing here
// sends to it (backend bridge, one host). A veth pair: this kernel may lack
// the dummy link type.
var pcAdvertise = netip.MustParseAddr("198.18.253.1")

// pcCopy copies src into dir under name, readable by the plugin (root).
func pcCopy(t *testing.T, src, dir, name string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// pcObserver is a cluster client of the test's own on the same TLS files,
// to read what the plugin wrote in etcd. It never registers.
func pcObserver(t *testing.T, srv *etcdtest.Server) *cluster.Client {
	t.Helper()
	f := srv.TLS()
	tlsConfig, err := cluster.TLSConfig(f.CA, f.ClientCert, f.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cluster.Open(cluster.Config{Endpoints: srv.Endpoints(), TLS: tlsConfig, HostID: "mit-pc-observer",
		Advertise: netip.MustParseAddr("198.18.253.2")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// pcHost is the registered host advertising pcAdvertise, or an error.
func pcHost(c *cluster.Client) (cluster.HostStatus, error) {
	hosts, err := c.Hosts(context.Background())
	if err != nil {
		return cluster.HostStatus{}, err
	}
	for _, h := range hosts {
		if h.Advertise == pcAdvertise {
			return h, nil
		}
	}
	return cluster.HostStatus{}, errors.New("no host advertising " + pcAdvertise.String() + " in etcd")
}

// pcNothingLeft fails unless etcd holds no host, network or address.
func pcNothingLeft(t *testing.T, c *cluster.Client, when string) {
	t.Helper()
	ctx := context.Background()
	if hosts, err := c.Hosts(ctx); err != nil || len(hosts) != 0 {
		t.Errorf("%s: hosts in etcd %+v (%v), want none", when, hosts, err)
	}
	if nets, err := c.Networks(ctx); err != nil || len(nets) != 0 {
		t.Errorf("%s: cluster networks in etcd %+v (%v), want none", when, nets, err)
	}
	if addrs, err := c.Addresses(ctx, pcClusterNet); err != nil || len(addrs) != 0 {
		t.Errorf("%s: addresses of %s in etcd %v (%v), want none", when, pcClusterNet, addrs, err)
	}
}

func TestPluginManagedCluster(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{TLS: true})
	files := srv.TLS()
	obs := pcObserver(t, srv)
	ctx := context.Background()

	addLink(t, pcAdvLink, "type", "veth", "peer", "name", pcAdvLink+"1")
	mustRun(t, "ip", "addr", "add", pcAdvertise.String()+"/32", "dev", pcAdvLink)
	mustRun(t, "ip", "link", "set", pcAdvLink, "up")

	tmp := t.TempDir()
	ref := ptCreate(t, tmp)
	// The files go into the state mount's source; the plugin sees them
	// under /var/lib/mynet (plugin-config.json: paths inside the state mount).
	state := filepath.Join(tmp, "state")
	pcCopy(t, files.CA, state, "etcd-ca.pem")
	pcCopy(t, files.OtherCA, state, "etcd-other-ca.pem")
	pcCopy(t, files.ClientCert, state, "etcd-client.pem")
	pcCopy(t, files.ClientKey, state, "etcd-client-key.pem")
	mustDocker(t, "plugin", "set", ref,
		"MYNET_CLUSTER=etcd://"+srv.HostPort(),
		"MYNET_CLUSTER_CERT=/var/lib/mynet/etcd-client.pem",
		"MYNET_CLUSTER_KEY=/var/lib/mynet/etcd-client-key.pem",
		"MYNET_ADVERTISE="+pcAdvertise.String())
	const br = "mit-pc-br"
	netArgs := []string{"-d", ref, "--ipam-driver", ref, "--ipam-opt", "network=" + pcClusterNet, "-o", "backend=bridge"}

	ok := t.Run("WrongCA", func(t *testing.T) {
		mustDocker(t, "plugin", "set", ref, "MYNET_CLUSTER_CA=/var/lib/mynet/etcd-other-ca.pem")
		off := ptLogSize()
		var seen []string // what the user saw
		out, err := docker(t, "plugin", "enable", ref)
		t.Logf("docker plugin enable with a CA that did not sign etcd's certificate: err=%v\n%s", err, out)
		seen = append(seen, "docker plugin enable: "+out)
		if err == nil {
			t.Cleanup(func() { _, _ = dockerCmd("network", "rm", br) })
			out, err := docker(t, append(append([]string{"network", "create"}, netArgs...), br)...)
			t.Logf("docker network create: err=%v\n%s", err, out)
			seen = append(seen, "docker network create: "+out)
			if err == nil {
				t.Errorf("docker network create with --ipam-opt network=%s succeeded although etcd refuses the plugin's TLS", pcClusterNet)
			} else if !strings.Contains(out, "etcd") {
				t.Errorf("docker network create failed without naming etcd: %s", out)
			}
		} else if !strings.Contains(out, "etcd") {
			t.Errorf("docker plugin enable failed without naming etcd: %s", out)
		}
		// The plugin's own account in dockerd's log names etcd too.
		if lines, err := ptPluginLogSince(ptInspect(t, ref).ID, off); err != nil {
			t.Logf("dockerd log %s not readable (%v): not checking the plugin's lines", dockerdLog, err)
		} else if n := ptCount(lines, "etcd"); n == 0 {
			t.Errorf("no line of the plugin in %s names etcd (%d lines of it):\n%s", dockerdLog, len(lines), strings.Join(lines, "\n"))
		} else {
			t.Logf("%d lines of the plugin name etcd, e.g.\n%s", n, pcFirst(lines, "etcd"))
		}
		// Nothing left: no Docker network, nothing in etcd.
		if _, err := dockerCmd("network", "inspect", br); err == nil {
			t.Errorf("network %s exists after a failed create", br)
		}
		pcNothingLeft(t, obs, "after the plugin was refused by etcd")
		if ptInspect(t, ref).Enabled {
			mustDocker(t, "plugin", "disable", ref)
		}
	})
	if !ok {
		t.Logf("the wrong-CA case failed; going on with the right CA")
	}

	mustDocker(t, "plugin", "set", ref, "MYNET_CLUSTER_CA=/var/lib/mynet/etcd-ca.pem")
	took := ptTimed(t, "plugin", "enable", ref)
	t.Logf("MEASURED docker plugin enable in a cluster: %s", took.Round(time.Millisecond))
	info := ptInspect(t, ref)
	for k, want := range map[string]string{
		"MYNET_CLUSTER":    "etcd://" + srv.HostPort(),
		"MYNET_CLUSTER_CA": "/var/lib/mynet/etcd-ca.pem",
		"MYNET_ADVERTISE":  pcAdvertise.String(),
	} {
		if got, _ := info.env(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}

	var hostID string
	if !t.Run("HostRegistered", func(t *testing.T) {
		if err := eventually(20*time.Second, func() error {
			h, err := pcHost(obs)
			if err == nil && !h.Alive {
				err = errors.New("host " + h.ID + " registered but not alive")
			}
			hostID = h.ID
			return err
		}); err != nil {
			t.Fatalf("the plugin did not register in etcd: %v", err)
		}
	}) {
		t.FailNow()
	}
	t.Logf("the plugin registered as host %s", hostID)

	n := netCreate(t, br, netArgs...)
	if len(n.Subnets()) != 1 {
		t.Fatalf("network %s: subnets %v, want one", br, n.Subnets())
	}
	subnet := n.Subnets()[0]
	runContainer(t, "mit-pc-c1", "--network", br)
	ip := containerIP(t, "mit-pc-c1", br)

	t.Run("JoinedAndClaimed", func(t *testing.T) {
		cn, _, err := obs.Network(ctx, pcClusterNet)
		if err != nil {
			t.Fatalf("cluster network %s in etcd: %v", pcClusterNet, err)
		}
		if cn.Subnet != subnet {
			t.Errorf("cluster network subnet %s, Docker's network has %s", cn.Subnet, subnet)
		}
		if _, ok := cn.Members[hostID]; !ok || len(cn.Members) != 1 {
			t.Errorf("members %v, want only host %s", cn.Members, hostID)
		}
		if cn.Driver == nil || cn.Driver.Backend != "bridge" {
			t.Errorf("driver half %+v, want backend bridge", cn.Driver)
		}
		if m := cn.Members[hostID]; m.DockerNetwork != "" && m.DockerNetwork != n.ID {
			t.Errorf("member's Docker network %s, want %s", m.DockerNetwork, n.ID)
		}
		addrs, err := obs.Addresses(ctx, pcClusterNet)
		if err != nil {
			t.Fatal(err)
		}
		a, ok := addrs[ip]
		if !ok || a.Host != hostID || a.Kind != cluster.KindEndpoint || !a.Released.IsZero() {
			t.Errorf("etcd's record of %s (mit-pc-c1): %+v (present %v), want held by %s as an endpoint", ip, a, ok, hostID)
		}
		if gw := cn.Gateway; gw.IsValid() {
			if g, ok := addrs[gw]; !ok || g.Kind != cluster.KindGateway {
				t.Errorf("gateway %s: record %+v (present %v), want a gateway claim", gw, g, ok)
			}
		}
		if h, err := pcHost(obs); err != nil || h.Addresses != 1 || len(h.Networks) != 1 || h.Networks[0] != pcClusterNet {
			t.Errorf("host status %+v (%v): want 1 address and network %s", h, err, pcClusterNet)
		}
	})

	t.Run("RemovedContainerCoolsDown", func(t *testing.T) {
		mustDocker(t, "rm", "-f", "mit-pc-c1")
		addrs, err := obs.Addresses(ctx, pcClusterNet)
		if err != nil {
			t.Fatal(err)
		}
		a, ok := addrs[ip]
		if !ok || a.Released.IsZero() {
			t.Fatalf("after docker rm, etcd's record of %s: %+v (present %v), want a tombstone", ip, a, ok)
		}
		if a.Free(time.Now(), obs.Cooldown()) {
			t.Errorf("tombstone of %s already free: released %s, cool-down %s", ip, a.Released, obs.Cooldown())
		}
		// While it cools down no container gets it again.
		runContainer(t, "mit-pc-c2", "--network", br)
		if got := containerIP(t, "mit-pc-c2", br); got == ip {
			t.Errorf("mit-pc-c2 got %s, released a moment ago and cooling down", got)
		}
	})

	t.Run("LastHostLeaves", func(t *testing.T) {
		netRemove(t, br)
		if _, _, err := obs.Network(ctx, pcClusterNet); !errors.Is(err, cluster.ErrNoNetwork) {
			t.Errorf("cluster network %s after docker network rm (its only host left): err %v, want ErrNoNetwork", pcClusterNet, err)
		}
		if addrs, err := obs.Addresses(ctx, pcClusterNet); err != nil || len(addrs) != 0 {
			t.Errorf("addresses of %s left in etcd: %v (%v)", pcClusterNet, addrs, err)
		}
		h, err := pcHost(obs)
		if err != nil || !h.Alive || len(h.Networks) != 0 || h.Addresses != 0 {
			t.Errorf("host after leaving: %+v (%v), want alive, no network, no address", h, err)
		}
	})

	// IPv6 in a cluster network: the IPv6 pool is cluster-wide like the
	// IPv4 one, dual stack on every engine and IPv6 only (--ipv4=false) on
	// Docker 28.
	t.Run("IPv6Pools", func(t *testing.T) {
		type pcCase struct {
			name string
			args []string
			v4   bool
		}
		v6 := freeV6Subnet(t)
		cases := []pcCase{{"mit-pc-ds", []string{"--ipv6", "--subnet", freeV4Subnet(t, 135).String(), "--subnet", v6.String()}, true}}
		if engineMajor(t) >= 28 {
			cases = append(cases, pcCase{"mit-pc-v6only", []string{"--ipv4=false", "--ipv6", "--subnet", v6.String()}, false})
		}
		for _, c := range cases {
			cname := c.name + "-net"
			args := append([]string{"-d", ref, "--ipam-driver", ref, "--ipam-opt", "network=" + cname, "-o", "backend=bridge"}, c.args...)
			netCreate(t, c.name, args...)
			ctr := c.name + "-c"
			runContainer(t, ctr, "--network", c.name)
			a6, err := netip.ParseAddr(containerNet(t, ctr, c.name).GlobalIPv6Address)
			if err != nil || !v6.Contains(a6) {
				t.Fatalf("%s: IPv6 address %s (%v), want one in %s", c.name, a6, err, v6)
			}
			cn, _, err := obs.Network(ctx, cname)
			if err != nil {
				t.Fatalf("cluster network %s: %v", cname, err)
			}
			if cn.Subnet6 != v6 || cn.Subnet.IsValid() != c.v4 || !cn.Gateway6.IsValid() {
				t.Errorf("%s in etcd: subnet %s, IPv6 subnet %s, IPv6 gateway %s; want IPv6 subnet %s and an IPv4 one: %v", cname, cn.Subnet, cn.Subnet6, cn.Gateway6, v6, c.v4)
			}
			addrs, err := obs.Addresses(ctx, cname)
			if err != nil {
				t.Fatal(err)
			}
			if a := addrs[a6]; a.Host != hostID || a.Kind != cluster.KindEndpoint || !a.Released.IsZero() {
				t.Errorf("etcd's record of %s (%s): %+v, want held by %s as an endpoint", a6, ctr, a, hostID)
			}
			mustDocker(t, "rm", "-f", ctr)
			netRemove(t, c.name)
			if _, _, err := obs.Network(ctx, cname); !errors.Is(err, cluster.ErrNoNetwork) {
				t.Errorf("cluster network %s after docker network rm: err %v, want ErrNoNetwork", cname, err)
			}
		}
	})

	t.Run("DisableWithdrawsLiveness", func(t *testing.T) {
		mustDocker(t, "plugin", "disable", ref)
		h, err := pcHost(obs)
		if err != nil {
			t.Fatalf("host record gone after disable (it is durable): %v", err)
		}
		if h.Alive {
			t.Errorf("host %s still alive in etcd after docker plugin disable", h.ID)
		}
	})
}

// pcFirst is the first line containing s.
func pcFirst(lines []string, s string) string {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}
