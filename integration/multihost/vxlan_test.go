//go:build integration

package multihost

import (
	"fmt"
	"strings"
	"testing"
)

// One cluster network on three hosts: containers on every host reach each
// other, also with packets and TCP payloads larger than the MTU, and the
// gateway answers on each host.
func TestCrossHostPingAndTCP(t *testing.T) {
	var ips []string
	for i, h := range L.hosts {
		subnet := []string{"--subnet", "10.200.0.0/24"}
		if i > 0 {
			subnet = nil // later hosts take the cluster network's subnet
		}
		h.network(t, "mit-blue", append([]string{"-o", "backend=vxlan", "--ipam-driver", "mynet", "--ipam-opt", "network=blue"}, subnet...)...)
		ips = append(ips, h.container(t, fmt.Sprintf("mit-c%d", h.N), "mit-blue"))
	}
	t.Logf("addresses: %v", ips)
	seen := map[string]bool{}
	for _, ip := range ips {
		if seen[ip] || !strings.HasPrefix(ip, "10.200.0.") {
			t.Fatalf("addresses %v: want distinct ones in 10.200.0.0/24", ips)
		}
		seen[ip] = true
	}
	for i, h := range L.hosts {
		ctr := fmt.Sprintf("mit-c%d", h.N)
		for j, ip := range ips {
			if i == j {
				continue
			}
			eventually(t, 15*L.syncWait(), fmt.Sprintf("%s -> %s", ctr, ip), func() error { return h.ping(t, ctr, ip, 56) })
		}
		h.expectPing(t, fmt.Sprintf("%s: gateway", h.Name), ctr, "10.200.0.1")
	}
	// Larger than the MTU (1450): ICMP fragments, and a TCP stream.
	if err := L.hosts[0].ping(t, "mit-c1", ips[1], 3000); err != nil {
		t.Errorf("ping with 3000 bytes: %v", err)
	}
	mtu := L.hosts[1].mustDocker(t, "exec", "mit-c2", "cat", "/sys/class/net/eth0/mtu")
	if mtu != "1450" {
		t.Errorf("container MTU %s, want 1450 (underlay 1500 - 50)", mtu)
	}
	// busybox nc ends at EOF on its stdin: keep it open.
	L.hosts[1].mustDocker(t, "exec", "-d", "mit-c2", "sh", "-c", "sleep 60 | nc -l -p 5000 > /tmp/got")
	const size = 2000000
	eventually(t, L.syncWait(), "TCP stream", func() error {
		_, err := L.hosts[0].docker(t, "exec", "mit-c1", "sh", "-c", fmt.Sprintf("head -c %d /dev/zero | nc -w 5 %s 5000", size, ips[1]))
		return err
	})
	eventually(t, L.syncWait(), "bytes received", func() error {
		got, err := L.hosts[1].docker(t, "exec", "mit-c2", "sh", "-c", "wc -c < /tmp/got")
		if err == nil && strings.TrimSpace(got) != fmt.Sprint(size) {
			err = fmt.Errorf("received %q bytes, sent %d", got, size)
		}
		return err
	})
}
