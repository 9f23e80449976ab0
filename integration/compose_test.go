//go:build integration

package integration

// Debian's docker-compose (1.29) with a mynet network: driver, driver_opts,
// ipam with our driver and a subnet, ipv4_address.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const composeBin = "/usr/bin/docker-compose"

// compose runs docker-compose with the project and file.
func compose(t testing.TB, project, file string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a := append([]string{"-p", project, "-f", file}, args...)
	cmd := exec.CommandContext(ctx, composeBin, a...)
	cmd.Env = append(os.Environ(), "COMPOSE_INTERACTIVE_NO_CLI=1")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("docker-compose %s (%s): err=%v\n%s", strings.Join(a, " "), time.Since(start).Round(time.Millisecond), err, strings.TrimSpace(string(out)))
	return string(out), err
}

const composeFile = `version: '%s'
services:
  web:
    image: %s
    command: ["sleep", "3600"]
    networks:
      appnet:
        ipv4_address: %s
  client:
    image: %s
    command: ["sleep", "3600"]
    networks:
      - appnet
networks:
  appnet:
    driver: %s
    driver_opts:
      com.docker.network.driver.mtu: "1400"
      com.docker.network.bridge.enable_icc: "true"
    ipam:
      driver: %s
      config:
        - subnet: %s
`

func TestCompose(t *testing.T) {
	if _, err := os.Stat(composeBin); err != nil {
		t.Fatalf("%s: %v (%s)", composeBin, err, howToPrepare)
	}
	for i, version := range []string{"2.4", "3.7"} {
		t.Run("v"+version, func(t *testing.T) {
			lc := bridgeTest(t)
			project := fmt.Sprintf("mit-compose%d", i)
			netName := project + "_appnet"
			sub := freeV4Subnet(t, 106)
			webIP := nthAddr(sub, 77)
			file := filepath.Join(t.TempDir(), "docker-compose.yml")
			body := fmt.Sprintf(composeFile, version, testImage, webIP, testImage, pluginName, pluginName, sub)
			if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			down := func() (string, error) { return compose(t, project, file, "down", "--timeout", "1") }
			t.Cleanup(func() { _, _ = down() })
			if out, err := compose(t, project, file, "up", "-d"); err != nil {
				if _, err2 := dockerCmd("network", "inspect", netName); err2 == nil {
					lc.watch(netInspect(t, netName))
				}
				t.Fatalf("docker-compose up: %v\n%s", err, out)
			}
			n := netInspect(t, netName)
			lc.watch(n)
			if n.Driver != pluginName || n.IPAM.Driver != pluginName {
				t.Errorf("network %s: driver %q, IPAM driver %q, want %q for both", netName, n.Driver, n.IPAM.Driver, pluginName)
			}
			if ss := n.Subnets(); len(ss) != 1 || ss[0] != sub {
				t.Errorf("network %s subnets %v, want %s", netName, ss, sub)
			}
			web, client := project+"_web_1", project+"_client_1"
			if got := containerIP(t, web, netName); got != webIP {
				t.Errorf("ipv4_address: web has %s, want %s", got, webIP)
			}
			clientIP := containerIP(t, client, netName)
			if !sub.Contains(clientIP) || clientIP == webIP {
				t.Errorf("client has %s, want another address of %s", clientIP, sub)
			}
			for _, c := range []struct{ from, to string }{{client, "web"}, {web, "client"}} {
				if err := pingName(c.from, c.to); err != nil {
					t.Errorf("by service name: %v", err)
				}
			}
			expectPing(t, "", client, webIP)
			for _, c := range []string{web, client} {
				if got := mustDockerExec(t, c, "cat", "/sys/class/net/eth0/mtu"); got != "1400" {
					t.Errorf("%s: eth0 MTU %s, want 1400 (driver_opts)", c, got)
				}
			}
			if b, err := os.ReadFile("/sys/class/net/" + mynetBridge(n) + "/mtu"); err != nil || strings.TrimSpace(string(b)) != "1400" {
				t.Errorf("bridge %s MTU %q (%v), want 1400", mynetBridge(n), b, err)
			}

			if out, err := down(); err != nil {
				t.Errorf("docker-compose down: %v\n%s", err, out)
			}
			if _, err := dockerCmd("network", "inspect", netName); err == nil {
				t.Errorf("network %s exists after docker-compose down", netName)
			}
			if out, _ := dockerCmd("ps", "-a", "-q", "--filter", "name="+project+"_"); strings.TrimSpace(out) != "" {
				t.Errorf("containers of %s exist after docker-compose down: %s", project, out)
			}
		})
	}
}
