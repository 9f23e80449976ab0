package link

import "testing"

// A read-only netlink call (the loopback link every namespace has) adds to
// the package's counter.
func TestKernelCallsAddToSpent(t *testing.T) {
	before := Spent()
	if ok, err := Exists("lo"); err != nil || !ok {
		t.Fatalf("lo: %v %v", ok, err)
	}
	if Spent() <= before {
		t.Fatalf("Spent did not grow: %v -> %v", before, Spent())
	}
}
