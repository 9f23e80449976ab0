//go:build integration

package multihost

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// addr6 is a container's IPv6 address on network, checked to be inside
// subnet, with the subnet's prefix length.
func (h *host) addr6(t testing.TB, name, network string, subnet netip.Prefix) netip.Addr {
	t.Helper()
	out := h.mustDocker(t, "inspect", "-f",
		"{{with index .NetworkSettings.Networks \""+network+"\"}}{{.GlobalIPv6Address}}/{{.GlobalIPv6PrefixLen}}{{end}}", name)
	p, err := netip.ParsePrefix(out)
	if err != nil {
		t.Fatalf("%s: %s on %s has no IPv6 address: %q (%v)", h.Name, name, network, out, err)
	}
	if p.Bits() != subnet.Bits() || !subnet.Contains(p.Addr()) {
		t.Fatalf("%s: %s on %s has IPv6 address %s, want one inside %s", h.Name, name, network, p, subnet)
	}
	return p.Addr()
}

// ping6 sends one ICMPv6 echo request from a container (payload size
// bytes); a reply must come within 2 s. busybox's ping6 applet.
func (h *host) ping6(t testing.TB, ctr string, ip netip.Addr, size int) error {
	t.Helper()
	_, err := h.docker(t, "exec", ctr, "ping6", "-c", "1", "-W", "2", "-s", fmt.Sprint(size), ip.String())
	return err
}

// networkNames lists the Docker networks of this host by name.
func (h *host) networkNames(t testing.TB) []string {
	t.Helper()
	return strings.Fields(h.mustDocker(t, "network", "ls", "--format", "{{.Name}}"))
}

// members is how many hosts etcd lists as members of cluster network name.
func members(t testing.TB, h *host, name string) int {
	t.Helper()
	out, err := h.mynetCLI("cluster", "hosts", "--json")
	if err != nil {
		t.Fatalf("mynet cluster hosts: %v\n%s", err, out)
	}
	return strings.Count(out, `"`+name+`"`)
}

// refuseCreate runs a docker network create of Docker network dockerName on
// h that must be refused with a message containing every one of want
// (case-insensitively when fold), and leave no Docker network behind.
func refuseCreate(t testing.TB, h *host, dockerName string, args []string, fold bool, want ...string) {
	t.Helper()
	full := append(append([]string{"network", "create", "-d", "mynet"}, args...), dockerName)
	out, err := h.docker(t, full...)
	if err == nil {
		h.docker(t, "network", "rm", dockerName)
		t.Errorf("%s: %v accepted", h.Name, args)
		return
	}
	for _, w := range want {
		got, w2 := out, w
		if fold {
			got, w2 = strings.ToLower(out), strings.ToLower(w)
		}
		if !strings.Contains(got, w2) {
			t.Errorf("%s: %v refused with: %s\nwant it to say %q", h.Name, args, out, w)
		}
	}
	if slices.Contains(h.networkNames(t), dockerName) {
		t.Errorf("%s: the refused create of %s left a Docker network behind", h.Name, dockerName)
		h.docker(t, "network", "rm", dockerName)
	}
}

// One dual-stack cluster network on three hosts: every container has an
// IPv4 and an IPv6 address of the cluster's subnets, distinct across hosts;
// containers reach each other over IPv6 (also with packets larger than the
// MTU), the IPv6 gateway answers on each host, and each host's VXLAN device
// has static IPv6 neighbour entries for the other hosts' containers.
func TestDualStackAcrossHosts(t *testing.T) {
	const (
		name    = "v6blue"
		network = "mit-v6blue"
		subnet4 = "10.216.0.0/24"
		subnet6 = "fd00:216::/64"
	)
	v6net := netip.MustParsePrefix(subnet6)
	gw6 := netip.MustParseAddr("fd00:216::1")
	var ips4 []string
	var ips6 []netip.Addr
	for i, h := range L.hosts {
		args := []string{"-o", "backend=vxlan", "--ipam-driver", "mynet", "--ipam-opt", "network=" + name, "--ipv6"}
		switch i {
		case 0: // defines both pools
			args = append(args, "--subnet", subnet4, "--subnet", subnet6)
		case 1: // takes both from the cluster
		default: // asks for the same ones
			args = append(args, "--subnet", subnet4, "--subnet", subnet6)
		}
		h.network(t, network, args...)
		// Every host has the same subnets, whether it gave them or not.
		cfg := h.mustDocker(t, "network", "inspect", "-f", "{{.EnableIPv6}} {{range .IPAM.Config}}{{.Subnet}} {{end}}", network)
		f := strings.Fields(cfg)
		if len(f) != 3 || f[0] != "true" || !slices.Contains(f[1:], subnet4) || !slices.Contains(f[1:], subnet6) {
			t.Fatalf("%s: network %s: EnableIPv6 and subnets %q, want true, %s and %s", h.Name, network, cfg, subnet4, subnet6)
		}
		ctr := fmt.Sprintf("mit-v6c%d", h.N)
		ips4 = append(ips4, h.container(t, ctr, network))
		ips6 = append(ips6, h.addr6(t, ctr, network, v6net))
		if gw := h.mustDocker(t, "inspect", "-f", "{{(index .NetworkSettings.Networks \""+network+"\").IPv6Gateway}}", ctr); gw != gw6.String() {
			t.Errorf("%s: %s has IPv6 gateway %q, want %s", h.Name, ctr, gw, gw6)
		}
	}
	t.Logf("IPv4 addresses: %v; IPv6 addresses: %v", ips4, ips6)
	seen4, seen6 := map[string]bool{}, map[netip.Addr]bool{}
	for i := range ips4 {
		if seen4[ips4[i]] || !strings.HasPrefix(ips4[i], "10.216.0.") {
			t.Fatalf("IPv4 addresses %v: want distinct ones in %s", ips4, subnet4)
		}
		if seen6[ips6[i]] || ips6[i] == gw6 {
			t.Fatalf("IPv6 addresses %v: want distinct ones, none the gateway %s", ips6, gw6)
		}
		seen4[ips4[i]], seen6[ips6[i]] = true, true
	}
	for i, h := range L.hosts {
		ctr := fmt.Sprintf("mit-v6c%d", h.N)
		for j, ip := range ips6 {
			if i == j {
				continue
			}
			eventually(t, 6*L.syncWait(), fmt.Sprintf("%s -> %s", ctr, ip), func() error { return h.ping6(t, ctr, ip, 56) })
		}
		// IPv4 still works beside it.
		var others4 []string
		for j, ip := range ips4 {
			if j != i {
				others4 = append(others4, ip)
			}
		}
		eventually(t, L.syncWait(), ctr+" -> the others over IPv4", func() error { return h.pingAll(t, ctr, others4) })
		if err := h.ping6(t, ctr, gw6, 56); err != nil {
			t.Errorf("%s: IPv6 gateway %s from %s: %v", h.Name, gw6, ctr, err)
		}
	}
	// Larger than the MTU (1450): the IPv6 source fragments, and the
	// fragments cross the tunnel both ways.
	for _, pair := range [][2]int{{0, 1}, {2, 0}} {
		from, to := L.hosts[pair[0]], pair[1]
		ctr := fmt.Sprintf("mit-v6c%d", from.N)
		eventually(t, L.syncWait(), fmt.Sprintf("%s -> %s with 3000 bytes", ctr, ips6[to]), func() error { return from.ping6(t, ctr, ips6[to], 3000) })
	}
	// The VXLAN device answers neighbour solicitations from static entries:
	// each host has a permanent IPv6 neighbour for every remote container.
	for i, h := range L.hosts {
		out, err := h.run("ip", "-6", "neigh", "show", "nud", "permanent")
		if err != nil {
			t.Fatalf("%s: ip -6 neigh: %v\n%s", h.Name, err, out)
		}
		have := map[string]bool{}
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 0 {
				have[f[0]] = true
			}
		}
		for j, ip := range ips6 {
			if j != i && !have[ip.String()] {
				t.Errorf("%s: no permanent IPv6 neighbour entry for %s (container on %s):\n%s", h.Name, ip, L.hosts[j].Name, out)
			}
		}
	}
}

// A later host must ask for the address families and the IPv6 subnet the
// cluster network was defined with: without --ipv6 on a dual-stack network,
// with another IPv6 subnet, or with --ipv6 on an IPv4-only network, its
// create is refused, naming what differs, and leaves neither a Docker
// network nor a membership behind; a matching create afterwards works.
func TestDualStackDefinitionMismatchRefused(t *testing.T) {
	h1, h2, h3 := L.hosts[0], L.hosts[1], L.hosts[2]
	const (
		name    = "v6red"
		network = "mit-v6red"
		subnet4 = "10.217.0.0/24"
		subnet6 = "fd00:217::/64"
	)
	base := []string{"-o", "backend=vxlan", "--ipam-driver", "mynet", "--ipam-opt", "network=" + name}
	h1.network(t, network, append(slices.Clone(base), "--ipv6", "--subnet", subnet4, "--subnet", subnet6)...)

	// Without --ipv6 on a network defined with IPv6.
	refuseCreate(t, h2, network, slices.Clone(base), true, name, "ipv6")
	refuseCreate(t, h2, network, append(slices.Clone(base), "--subnet", subnet4), true, name, "ipv6")
	// Another IPv6 subnet.
	refuseCreate(t, h3, network, append(slices.Clone(base), "--ipv6", "--subnet", subnet4, "--subnet", "fd00:317::/64"), false,
		"already exists with IPv6 subnet="+subnet6+"; this request asks for IPv6 subnet=fd00:317::/64")
	eventually(t, L.syncWait(), "only "+h1.Name+" a member of "+name, func() error {
		if n := members(t, h1, name); n != 1 {
			return fmt.Errorf("%d members of %s in etcd, want 1", n, name)
		}
		return nil
	})

	// Matching creates still work after the refusals: host 2 takes both
	// subnets from the cluster, host 3 names them.
	h2.network(t, network, append(slices.Clone(base), "--ipv6")...)
	h3.network(t, network, append(slices.Clone(base), "--ipv6", "--subnet", subnet4, "--subnet", subnet6)...)
	v6net := netip.MustParsePrefix(subnet6)
	h1.container(t, "mit-v6red1", network)
	a1 := h1.addr6(t, "mit-v6red1", network, v6net)
	h2.container(t, "mit-v6red2", network)
	a2 := h2.addr6(t, "mit-v6red2", network, v6net)
	if a1 == a2 {
		t.Fatalf("both containers have %s", a1)
	}
	eventually(t, 6*L.syncWait(), "mit-v6red2 -> mit-v6red1 over IPv6", func() error { return h2.ping6(t, "mit-v6red2", a1, 56) })
	eventually(t, L.syncWait(), "mit-v6red1 -> mit-v6red2 over IPv6", func() error { return h1.ping6(t, "mit-v6red1", a2, 56) })
	if n := members(t, h1, name); n != 3 {
		t.Errorf("%d members of %s in etcd, want 3", n, name)
	}

	// A network defined IPv4-only: a later host asking for IPv6 is refused.
	const (
		name4    = "v6red4"
		network4 = "mit-v6red4"
		subnet44 = "10.218.0.0/24"
	)
	base4 := []string{"-o", "backend=vxlan", "--ipam-driver", "mynet", "--ipam-opt", "network=" + name4}
	h1.network(t, network4, append(slices.Clone(base4), "--subnet", subnet44)...)
	refuseCreate(t, h2, network4, append(slices.Clone(base4), "--ipv6"), false, name4, "IPv6 subnet")
	refuseCreate(t, h2, network4, append(slices.Clone(base4), "--ipv6", "--subnet", subnet44, "--subnet", "fd00:218::/64"), false, name4, "IPv6 subnet")
	eventually(t, L.syncWait(), "only "+h1.Name+" a member of "+name4, func() error {
		if n := members(t, h1, name4); n != 1 {
			return fmt.Errorf("%d members of %s in etcd, want 1", n, name4)
		}
		return nil
	})
	h2.network(t, network4, base4...)
	if n := members(t, h1, name4); n != 2 {
		t.Errorf("%d members of %s in etcd, want 2", n, name4)
	}
}
