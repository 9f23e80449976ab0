//go:build integration

package integration

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// asyncFromAPI is the Docker API version from which the plugin deletes
// veths and bridges in the background (--async-teardown auto).
const asyncFromAPI = 49

// The plugin turns async teardown on for an engine whose API is 1.49 or later
// and leaves it off for an older one; either way `docker rm -f` of a network's
// containers at once, then `docker network rm`, then a new network on the same
// subnet right away, leave nothing behind and clash with nothing.
func TestTeardownFollowsTheEngine(t *testing.T) {
	lc := bridgeTest(t)
	api := mustDocker(t, "version", "--format", "{{.Server.APIVersion}}")
	minor, err := strconv.Atoi(strings.TrimPrefix(api, "1."))
	if err != nil {
		t.Fatalf("engine API version %q: %v", api, err)
	}
	async := minor >= asyncFromAPI
	want := fmt.Sprintf(`msg="async teardown follows the engine" api=%s on=%v`, api, async)
	if err := eventually(15*time.Second, func() error {
		if !strings.Contains(plugin.LogTail(100000), want) {
			return fmt.Errorf("the plugin's log never says %q", want)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	subnet := freeV4Subnet(t, 134).String()
	name := "mit-teardown"
	lc.net(name, mynetNetArgs(ipamSetups[1].args, "--subnet", subnet)...)
	var ctrs []string
	for i := 0; i < 6; i++ {
		ctrs = append(ctrs, runContainer(t, fmt.Sprintf("mit-teardown-%d", i), "--network", name))
	}
	hostIfs := map[string]bool{}
	for _, c := range ctrs {
		hostIfs["mnh"+containerNet(t, c, name).EndpointID[:12]] = true
	}
	mustDocker(t, append([]string{"rm", "-f"}, ctrs...)...)
	rm := func() error {
		if out, err := docker(t, "network", "rm", name); err != nil {
			return fmt.Errorf("docker network rm right after the containers: %v: %s", err, out)
		}
		return nil
	}
	if async {
		// An engine this recent counts endpoints without a race: the
		// network goes at the first try.
		if err := rm(); err != nil {
			t.Fatal(err)
		}
	} else if err := eventually(10*time.Second, rm); err != nil {
		// Docker 20.10 now and then refuses with "has active endpoints"
		// for a moment after its containers are gone, on its own bridge too.
		t.Fatal(err)
	}

	// The same subnet again at once: no old bridge or route in the way.
	again := name + "-again"
	lc.net(again, mynetNetArgs(ipamSetups[1].args, "--subnet", subnet)...)
	a := runContainer(t, "mit-teardown-a", "--network", again)
	b := runContainer(t, "mit-teardown-b", "--network", again)
	expectPing(t, "on a network made on the same subnet right after the teardown", a, containerIP(t, b, again))

	// The old veths go, soon if not at once.
	if err := eventually(10*time.Second, func() error {
		for l := range hostIfs {
			if linkExists(l) {
				return fmt.Errorf("veth %s of a removed container is still there", l)
			}
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}
