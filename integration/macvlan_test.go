//go:build integration

package integration

import (
	"os/exec"
	"strings"
	"testing"
)

func TestMacvlanBridgeModeReachesPeersAndLAN(t *testing.T) {
	withPlugin(t)
	subnet := freeSubnet(t, "10.170.0.0/24")
	parent, lanHost := lanParent(t, "a", subnet)
	netCreate(t, "mit-mv", "-d", pluginName, "-o", "backend=macvlan", "-o", "parent="+parent,
		"--subnet", subnet.String(), "--gateway", lanHost.String())
	runContainer(t, "mit-mv-a", "--network", "mit-mv")
	runContainer(t, "mit-mv-b", "--network", "mit-mv")
	if err := ping(t, "mit-mv-a", containerIP(t, "mit-mv-b", "mit-mv")); err != nil {
		t.Fatal(err)
	}
	if err := ping(t, "mit-mv-b", lanHost); err != nil {
		t.Fatalf("container cannot reach the LAN host: %v", err)
	}
	// busybox ip has no -d: read the link with the host's iproute2 in the container's namespace.
	pid := strings.TrimSpace(mustDocker(t, "inspect", "-f", "{{.State.Pid}}", "mit-mv-a"))
	raw, err := exec.Command("nsenter", "-t", pid, "-n", "ip", "-d", "link", "show", "eth0").CombinedOutput()
	if out := string(raw); err != nil || !strings.Contains(out, "macvlan mode bridge") {
		t.Fatalf("eth0 is not a bridge-mode macvlan:\n%s", out)
	}
	// A LAN host reaches the container directly (no NAT on macvlan).
	ip := containerIP(t, "mit-mv-a", "mit-mv")
	if out, err := exec.Command("ip", "netns", "exec", "mit-lan-a", "/bin/busybox", "ping", "-c1", "-W2", ip.String()).CombinedOutput(); err != nil {
		t.Fatalf("LAN host cannot reach %s: %v\n%s", ip, err, out)
	}
}

func TestMacvlanPrivateModeIsolatesContainers(t *testing.T) {
	withPlugin(t)
	subnet := freeSubnet(t, "10.171.0.0/24")
	parent, lanHost := lanParent(t, "b", subnet)
	netCreate(t, "mit-mvp", "-d", pluginName, "-o", "backend=macvlan", "-o", "parent="+parent,
		"-o", "macvlan_mode=private", "--subnet", subnet.String(), "--gateway", lanHost.String())
	runContainer(t, "mit-mvp-a", "--network", "mit-mvp")
	runContainer(t, "mit-mvp-b", "--network", "mit-mvp")
	if err := ping(t, "mit-mvp-b", lanHost); err != nil {
		t.Fatalf("private mode must still reach the LAN: %v", err)
	}
	if out, err := dockerCmd("exec", "mit-mvp-a", "ping", "-c1", "-W1", containerIP(t, "mit-mvp-b", "mit-mvp").String()); err == nil {
		t.Fatalf("private-mode containers reached each other:\n%s", out)
	}
}

func TestMacvlanBadInputIsRefusedClearly(t *testing.T) {
	withPlugin(t)
	subnet := freeSubnet(t, "10.172.0.0/24")
	parent, _ := lanParent(t, "c", subnet)
	cases := map[string][]string{
		"does not exist":                {"-o", "backend=macvlan", "-o", "parent=mitnosuch0"},
		"loopback":                      {"-o", "backend=macvlan", "-o", "parent=lo"},
		"macvlan_mode":                  {"-o", "backend=macvlan", "-o", "parent=" + parent, "-o", "macvlan_mode=fast"},
		"applies to the bridge":         {"-o", "backend=macvlan", "-o", "parent=" + parent, "-o", "com.docker.network.bridge.enable_icc=false"},
		"applies to the ipvlan backend": {"-o", "backend=macvlan", "-o", "parent=" + parent, "-o", "ipvlan_mode=l3"},
		"larger than the MTU 1500":      {"-o", "backend=macvlan", "-o", "parent=" + parent, "-o", "mtu=9000"},
	}
	for want, opts := range cases {
		args := append([]string{"network", "create", "-d", pluginName, "--subnet", subnet.String()}, opts...)
		out, err := docker(t, append(args, "mit-mvbad")...)
		if err == nil {
			dockerCmd("network", "rm", "mit-mvbad")
			t.Errorf("%v accepted", opts)
			continue
		}
		if !strings.Contains(out, want) {
			t.Errorf("%v: error does not say %q:\n%s", opts, want, out)
		}
	}
	netCreate(t, "mit-mvok", "-d", pluginName, "-o", "backend=macvlan", "-o", "parent="+parent, "--subnet", subnet.String())
	out, err := tryRunContainer(t, "mit-mvok-p", "--network", "mit-mvok", "-p", "18199:80")
	if err == nil || !strings.Contains(out, "published ports") {
		t.Fatalf("-p on macvlan: %v\n%s", err, out)
	}
}
