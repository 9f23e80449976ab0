package blackbox

import (
	"strings"
	"testing"
	"time"
)

// The real daemon joined to an etcd that is not there (nothing listens on
// the endpoint): it still serves, without waiting for etcd once more after
// the registration failed, and a call that needs etcd fails naming it.
func TestDaemonServesWhileEtcdIsAway(t *testing.T) {
	d := newDaemon(t)
	d.flags = []string{"--cluster", "etcd://127.0.0.1:9", "--advertise", "192.0.2.10", "--cluster-sync", "1h"}
	d.wrap = []string{"sh", "-c", `ip link set lo up && exec "$@"`, "sh"}
	start := time.Now()
	d.start(t) // fails the test unless the socket answers within 10 s
	if !d.running() {
		t.Fatalf("daemon exited at start: %v\n%s", d.waitErr, d.log())
	}
	t.Logf("socket answered %s after the start", time.Since(start).Round(time.Millisecond))
	for _, want := range []string{"etcd does not answer at start", "start-up reconcile with etcd left to the loops"} {
		if !strings.Contains(d.log(), want) {
			t.Errorf("log lacks %q:\n%s", want, d.log())
		}
	}
	msg := d.call(t, "/IpamDriver.RequestPool", `{"AddressSpace":"LocalDefault","Pool":"10.77.0.0/24","Options":{"network":"blue"}}`)
	if !strings.Contains(msg, "etcd") || !strings.Contains(msg, "127.0.0.1:9") {
		t.Errorf("a cluster pool with etcd away: %q, want an error naming etcd and 127.0.0.1:9", msg)
	}
	if msg := d.call(t, "/IpamDriver.RequestPool", `{"AddressSpace":"LocalDefault","Pool":"10.77.1.0/24"}`); msg != "" {
		t.Errorf("a local pool with etcd away: %s", msg)
	}
}
