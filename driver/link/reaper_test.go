package link

import (
	"slices"
	"testing"

	"github.com/mynet/mynet/internal/testutil"
	"github.com/vishvananda/netlink"
)

// The reaper deletes in the namespace it was made in, though its goroutines
// run on threads of the host's namespace; Wait ends when the links are gone,
// so the same names can be made again at once.
func TestReaperDeletesInItsNamespaceAndWaitEnds(t *testing.T) {
	testutil.InNetns(t, func() {
		var failed []string
		r, err := NewReaper(func(names []string, err error) { failed = append(failed, names...) })
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := SetUpBridge("trb0", 0, nil); err != nil {
			t.Fatal(err)
		}
		for round := 0; round < 3; round++ {
			if err := CreateVeth(Veth{Host: "trh0", Peer: "trc0", Bridge: "trb0"}); err != nil {
				t.Fatalf("round %d: veth again right after Wait: %v", round, err)
			}
			r.Delete("trh0", "trc0", "trh0") // a name twice is handed over once
			if p := r.Pending(); len(p) != 0 && !slices.Contains(p, "trh0") {
				t.Fatalf("pending %v", p)
			}
			r.Wait("trh0", "trc0")
			absent(t, "trh0", "trc0")
		}
		if err := SetDown("trb0"); err != nil {
			t.Fatal(err)
		}
		if l, _ := netlink.LinkByName("trb0"); l == nil || l.Attrs().OperState == netlink.OperUp {
			t.Fatalf("bridge not down: %v", l)
		}
		r.Delete("trb0", "nosuchlink")
		r.Close()
		absent(t, "trb0")
		if len(r.Pending()) != 0 || len(failed) != 0 {
			t.Fatalf("after Close: pending %v, failed %v", r.Pending(), failed)
		}
		if err := SetDown("nosuchlink"); err != nil {
			t.Fatalf("SetDown of a missing link: %v", err)
		}
	})
}
