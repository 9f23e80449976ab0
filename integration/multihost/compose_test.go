//go:build integration

package multihost

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// The same compose file on two hosts gives one cluster network.
func TestComposeOnTwoHosts(t *testing.T) {
	file := filepath.Join(L.dir, "compose.yml")
	if err := os.WriteFile(file, []byte(`version: "2.4"
services:
  app:
    image: `+image+`
    command: sleep 3600
    networks: [blue]
networks:
  blue:
    driver: mynet
    driver_opts: {backend: vxlan}
    ipam: {driver: mynet, options: {network: cblue}, config: [{subnet: 10.214.0.0/24}]}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	h1, h2 := L.hosts[0], L.hosts[1]
	for _, h := range []*host{h1, h2} {
		project := fmt.Sprintf("mitc%d", h.N)
		if out, err := h.run("docker-compose", "-p", project, "-f", file, "up", "-d"); err != nil {
			t.Fatalf("%s: docker-compose up: %v\n%s", h.Name, err, out)
		}
		t.Cleanup(func() { h.run("docker-compose", "-p", project, "-f", file, "down") })
	}
	ip2 := h2.addr(t, "mitc2_app_1", "mitc2_blue")
	eventually(t, L.syncWait(), "compose app on h1 -> compose app on h2", func() error { return h1.ping(t, "mitc1_app_1", ip2, 56) })
	out, err := h1.mynetCLI("networks")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mynet networks on %s:\n%s", h1.Name, out)
}
