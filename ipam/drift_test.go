package ipam

import (
	"net/netip"
	"testing"
	"time"

	"github.com/mynet/mynet/drift"
)

// Pools no Docker network uses and endpoint addresses no Docker endpoint
// holds are found and, with fix, released; what Docker uses stays.
func TestDoctorReleasesWhatDockerDoesNotUse(t *testing.T) {
	e := newEnv(t, DefaultRanges)
	used := e.pool("10.91.0.0/24", "", false)
	unused := e.pool("10.92.0.0/24", "", false)
	gw, _ := e.d.RequestAddress(AddressRequest{PoolID: used.PoolID, Options: map[string]string{optRequestType: gatewayType}})
	held, _ := e.d.RequestAddress(AddressRequest{PoolID: used.PoolID})
	lost, _ := e.d.RequestAddress(AddressRequest{PoolID: used.PoolID})
	heldIP := netip.MustParsePrefix(held.Address).Addr()
	view := drift.View{FetchedAt: time.Now().Add(time.Minute), Networks: map[string]drift.Network{
		"n1": {Name: "n1", OurIPAM: true, Pools: []drift.Pool{{Subnet: netip.MustParsePrefix("10.91.0.0/24")}},
			Endpoints: map[string]drift.Endpoint{"e1": {IPv4: heldIP}}},
		// Same subnet on a network of another IPAM: does not count.
		"n2": {Name: "n2", Pools: []drift.Pool{{Subnet: netip.MustParsePrefix("10.92.0.0/24")}}},
	}}
	if ds := e.d.Doctor(view, false, time.Hour); len(ds) != 0 {
		t.Errorf("records younger than the grace were judged: %+v", ds)
	}
	ds := e.d.Doctor(view, false, 0)
	if len(ds) != 2 || ds[0].Kind != drift.AddressUnused || ds[0].Object != "address "+netip.MustParsePrefix(lost.Address).Addr().String() ||
		ds[1].Kind != drift.PoolUnused || ds[1].Object != "pool "+unused.PoolID {
		t.Fatalf("drift: %+v (gateway %s, lost %s)", ds, gw.Address, lost.Address)
	}
	for _, d := range e.d.Doctor(view, true, 0) {
		if !d.Fixed {
			t.Errorf("not fixed: %+v", d)
		}
	}
	if ds := e.d.Doctor(view, false, 0); len(ds) != 0 {
		t.Errorf("after fix: %+v", ds)
	}
	e.restart(DefaultRanges) // the releases are durable
	for _, u := range e.d.Usage() {
		if u.Pool == netip.MustParsePrefix("10.92.0.0/24") {
			t.Errorf("unused pool still there after restart")
		}
		if u.Pool == netip.MustParsePrefix("10.91.0.0/24") && u.Used != 2 {
			t.Errorf("used pool holds %d addresses, want 2 (gateway, held)", u.Used)
		}
	}
}
