//go:build integration

package multihost

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// vxlanNet creates cluster network name (subnet on the first host, taken
// from the cluster on the others) as Docker network mit-<name> on hosts.
func vxlanNet(t testing.TB, name, subnet string, hosts []*host, extra ...string) {
	t.Helper()
	for i, h := range hosts {
		args := append([]string{"-o", "backend=vxlan", "--ipam-driver", "mynet", "--ipam-opt", "network=" + name}, extra...)
		if i == 0 {
			args = append(args, "--subnet", subnet)
		}
		h.network(t, "mit-"+name, args...)
	}
}

// Containers started at once on every host get distinct addresses, and all
// reach each other.
func TestConcurrentStartsGetUniqueAddresses(t *testing.T) {
	vxlanNet(t, "conc", "10.201.0.0/24", L.hosts)
	const each = 4
	names := map[*host][]string{}
	var wg sync.WaitGroup
	errs := make(chan error, len(L.hosts)*each)
	for _, h := range L.hosts {
		for i := range each {
			name := fmt.Sprintf("mit-conc%d-%d", h.N, i)
			names[h] = append(names[h], name)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if out, err := h.docker(t, "run", "-d", "--name", name, "--network", "mit-conc", image, "sleep", "3600"); err != nil {
					errs <- fmt.Errorf("%s: %v: %s", name, err, out)
				}
			}()
		}
		t.Cleanup(func() { h.removeContainers(t, names[h]...) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	owner := map[string]string{}
	ipsOf := map[*host][]string{}
	for _, h := range L.hosts {
		for _, name := range names[h] {
			ip := h.addr(t, name, "mit-conc")
			if prev, dup := owner[ip]; dup {
				t.Fatalf("%s handed out to %s and %s", ip, prev, name)
			}
			owner[ip] = name
			ipsOf[h] = append(ipsOf[h], ip)
		}
	}
	for _, h := range L.hosts {
		t.Logf("%s: %v", h.Name, ipsOf[h])
	}
	// From one container on each host to every container on the others.
	for _, from := range L.hosts {
		var others []string
		for _, h := range L.hosts {
			if h != from {
				others = append(others, ipsOf[h]...)
			}
		}
		eventually(t, L.syncWait(), names[from][0]+" -> the other hosts", func() error { return from.pingAll(t, names[from][0], others) })
	}
	out, err := L.hosts[0].mynetCLI("cluster", "hosts")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mynet cluster hosts:\n%s", out)
	for _, h := range L.hosts {
		if !strings.Contains(out, h.Addr) {
			t.Errorf("mynet cluster hosts does not list %s", h.Addr)
		}
	}
}

// A later host asking for another subnet or backend is refused, naming the
// cluster network, what it has and what was asked; nothing is left behind.
func TestConflictingDefinitionsRefused(t *testing.T) {
	h1, h2 := L.hosts[0], L.hosts[1]
	h1.network(t, "mit-red", "-o", "backend=vxlan", "--ipam-driver", "mynet", "--ipam-opt", "network=red", "--subnet", "10.202.0.0/24")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-o", "backend=vxlan", "--subnet", "10.203.0.0/24"}, "cluster network red already exists with subnet=10.202.0.0/24; this request asks for subnet=10.203.0.0/24"},
		{[]string{"-o", "backend=bridge"}, "cluster network red already exists with backend=vxlan; this request asks for backend=bridge"},
		{[]string{"-o", "backend=vxlan", "-o", "com.docker.network.bridge.enable_icc=false"}, "enable_icc=true; this request asks for option com.docker.network.bridge.enable_icc=false"},
		{[]string{"-o", "backend=vxlan", "--ipv6"}, "cluster network red already exists with IPv6 subnet=(none); this request asks for IPv6 subnet=(automatic)"},
	} {
		args := append([]string{"network", "create", "-d", "mynet", "--ipam-driver", "mynet", "--ipam-opt", "network=red"}, tc.args...)
		out, err := h2.docker(t, append(args, "mit-red2")...)
		if err == nil {
			h2.docker(t, "network", "rm", "mit-red2")
			t.Errorf("%v accepted", tc.args)
			continue
		}
		if !strings.Contains(out, tc.want) {
			t.Errorf("%v: %s\nwant it to say %q", tc.args, out, tc.want)
		}
	}
	if out := h2.mustDocker(t, "network", "ls", "-q", "--filter", "name=mit-red2"); out != "" {
		t.Errorf("refused creates left networks: %s", out)
	}
	// vxlan without a cluster pool is refused, naming what to add.
	out, err := h2.docker(t, "network", "create", "-d", "mynet", "-o", "backend=vxlan", "--subnet", "10.204.0.0/24", "mit-novx")
	if err == nil {
		h2.docker(t, "network", "rm", "mit-novx")
		t.Fatal("vxlan on Docker's IPAM accepted")
	}
	if !strings.Contains(out, "--ipam-opt network=NAME") {
		t.Errorf("vxlan on Docker's IPAM: %s", out)
	}
	hosts, err := h1.mynetCLI("cluster", "hosts", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(hosts, `"red"`) != 1 {
		t.Errorf("only %s should be a member of red:\n%s", h1.Name, hosts)
	}
}

// Cluster networks are isolated from each other across hosts; --internal
// keeps to its subnet; egress leaves through each host's own uplink (NAT).
func TestIsolationInternalAndEgress(t *testing.T) {
	h1, h2 := L.hosts[0], L.hosts[1]
	both := []*host{h1, h2}
	vxlanNet(t, "iso-a", "10.205.0.0/24", both)
	vxlanNet(t, "iso-b", "10.206.0.0/24", both)
	vxlanNet(t, "iso-int", "10.207.0.0/24", both, "--internal")
	a1 := h1.container(t, "mit-isoa1", "mit-iso-a")
	b2 := h2.container(t, "mit-isob2", "mit-iso-b")
	i1 := h1.container(t, "mit-isoi1", "mit-iso-int")
	i2 := h2.container(t, "mit-isoi2", "mit-iso-int")
	a2 := h2.container(t, "mit-isoa2", "mit-iso-a")
	eventually(t, L.syncWait(), "same network across hosts", func() error { return h1.ping(t, "mit-isoa1", a2, 56) })
	eventually(t, L.syncWait(), "internal network across hosts", func() error { return h1.ping(t, "mit-isoi1", i2, 56) })
	if !h1.unreachable(t, "mit-isoa1", b2) {
		t.Errorf("a container of iso-a on %s reached one of iso-b on %s", h1.Name, h2.Name)
	}
	if !h2.unreachable(t, "mit-isob2", a1) {
		t.Errorf("a container of iso-b on %s reached one of iso-a on %s", h2.Name, h1.Name)
	}
	if !h2.unreachable(t, "mit-isob2", i1) {
		t.Errorf("iso-b reached the internal network")
	}
	// Egress: the root namespace's underlay address stands for "outside".
	h1.expectPing(t, fmt.Sprintf("egress from %s", h1.Name), "mit-isoa1", rootAddr)
	if !h2.unreachable(t, "mit-isoi2", rootAddr) {
		t.Errorf("an --internal network reached outside")
	}
	// The source outside is the host's own address (NAT through its uplink).
	ln, err := net.Listen("tcp", rootAddr+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			peer <- c.RemoteAddr().(*net.TCPAddr).IP.String()
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	h2.docker(t, "exec", "mit-isoa2", "sh", "-c", fmt.Sprintf("echo hi | nc -w 2 %s %d", rootAddr, port))
	select {
	case src := <-peer:
		if src != h2.Addr {
			t.Errorf("outside sees %s, want %s's own address %s", src, h2.Name, h2.Addr)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("no connection from %s's container to the outside", h2.Name)
	}
}

// -p publishes on the host where the container runs.
func TestPublishedPortOnTheContainersHost(t *testing.T) {
	h1, h2 := L.hosts[0], L.hosts[1]
	vxlanNet(t, "pub", "10.209.0.0/24", []*host{h1, h2})
	h2.mustDocker(t, "run", "-d", "--name", "mit-pub", "--network", "mit-pub", "-p", "18080:8080", image,
		"sh", "-c", "echo hello-from-h2 > /tmp/index.html && httpd -f -p 8080 -h /tmp")
	t.Cleanup(func() { h2.docker(t, "rm", "-f", "mit-pub") })
	var body string
	eventually(t, L.syncWait(), "published port", func() error {
		c, err := net.DialTimeout("tcp", h2.Addr+":18080", 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		fmt.Fprintf(c, "GET /index.html HTTP/1.0\r\n\r\n")
		b, _ := io.ReadAll(c)
		body = string(b)
		if !strings.Contains(body, "hello-from-h2") {
			return fmt.Errorf("answer %q", body)
		}
		return nil
	})
	if c, err := net.DialTimeout("tcp", h1.Addr+":18080", 2*time.Second); err == nil {
		c.Close()
		t.Errorf("port 18080 answers on %s too, where the container does not run", h1.Name)
	}
}

// macvlan on a parent that is already one LAN (every host's eth1 sits on the
// underlay bridge): cluster IPAM alone keeps addresses apart.
func TestMacvlanWithClusterIPAM(t *testing.T) {
	subnet6 := netip.MustParsePrefix("fd00:198::/64")
	var ips []string
	var ips6 []netip.Addr
	for i, h := range L.hosts {
		args := []string{"-o", "backend=macvlan", "-o", "parent=eth1", "--ipam-driver", "mynet", "--ipam-opt", "network=lan", "--ipv6"}
		if i == 0 {
			args = append(args, "--subnet", "10.198.0.0/24", "--subnet", subnet6.String())
		}
		h.network(t, "mit-lan", args...)
		ctr := fmt.Sprintf("mit-lan%d", h.N)
		ips = append(ips, h.container(t, ctr, "mit-lan"))
		ips6 = append(ips6, h.addr6(t, ctr, "mit-lan", subnet6))
	}
	if ips[0] == ips[1] || ips[1] == ips[2] || ips[0] == ips[2] {
		t.Fatalf("macvlan addresses %v are not distinct", ips)
	}
	if ips6[0] == ips6[1] || ips6[1] == ips6[2] || ips6[0] == ips6[2] {
		t.Fatalf("macvlan IPv6 addresses %v are not distinct", ips6)
	}
	for i, h := range L.hosts {
		next, next6 := ips[(i+1)%len(ips)], ips6[(i+1)%len(ips6)]
		ctr := fmt.Sprintf("mit-lan%d", h.N)
		h.expectPing(t, fmt.Sprintf("%s -> %s over the shared LAN", h.Name, next), ctr, next)
		eventually(t, L.syncWait(), fmt.Sprintf("%s -> %s over the shared LAN", h.Name, next6), func() error { return h.ping6(t, ctr, next6, 56) })
	}
}

// docker network rm on every host releases the cluster network: it can be
// defined again, with another subnet.
func TestLeaveAndRecreate(t *testing.T) {
	for round, subnet := range []string{"10.210.0.0/24", "10.211.0.0/24"} {
		for i, h := range L.hosts {
			args := []string{"network", "create", "-d", "mynet", "-o", "backend=vxlan", "--ipam-driver", "mynet", "--ipam-opt", "network=again"}
			if i == 0 {
				args = append(args, "--subnet", subnet)
			}
			h.mustDocker(t, append(args, "mit-again")...)
			t.Cleanup(func() { h.docker(t, "network", "rm", "mit-again") }) // on failure; gone already otherwise
		}
		ip := L.hosts[2].container(t, fmt.Sprintf("mit-again%d", round), "mit-again")
		if !strings.HasPrefix(ip, strings.TrimSuffix(subnet, "0/24")) {
			t.Fatalf("round %d: address %s not in %s", round, ip, subnet)
		}
		L.hosts[2].mustDocker(t, "rm", "-f", fmt.Sprintf("mit-again%d", round))
		for i, h := range L.hosts {
			h.mustDocker(t, "network", "rm", "mit-again")
			out, err := h.mynetCLI("cluster", "hosts", "--json")
			if err != nil {
				t.Fatal(err)
			}
			left := strings.Count(out, `"again"`)
			if want := len(L.hosts) - 1 - i; left != want {
				t.Fatalf("round %d, after %d hosts left: %d members in etcd, want %d\n%s", round, i+1, left, want, out)
			}
		}
	}
}
