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
		"n1": {Name: "n1", IPAM: "mynet", Pools: []drift.Pool{{Subnet: netip.MustParsePrefix("10.91.0.0/24")}},
			Endpoints: map[string]drift.Endpoint{"e1": {IPv4: heldIP}}},
	}}
	if ds := e.d.Doctor(view, nil, time.Hour); len(ds) != 0 {
		t.Errorf("records younger than the grace were judged: %+v", ds)
	}
	ds := e.d.Doctor(view, nil, 0)
	if len(ds) != 2 || ds[0].Kind != drift.AddressUnused || ds[0].Object != "address "+netip.MustParsePrefix(lost.Address).Addr().String() ||
		ds[1].Kind != drift.PoolUnused || ds[1].Object != "pool "+unused.PoolID {
		t.Fatalf("drift: %+v (gateway %s, lost %s)", ds, gw.Address, lost.Address)
	}
	for _, d := range e.d.Doctor(view, drift.FixAll, 0) {
		if !d.Fixed {
			t.Errorf("not fixed: %+v", d)
		}
	}
	if ds := e.d.Doctor(view, nil, 0); len(ds) != 0 {
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

// --aux-address reservations are requested like any other address (Docker
// passes no option that tells them apart), so only Docker's IPAM config says
// what they are: the doctor keeps them.
func TestDoctorKeepsAuxAddresses(t *testing.T) {
	e := newEnv(t, DefaultRanges)
	p := e.pool("10.93.0.0/24", "10.93.0.128/25", false)
	aux := e.addr(p.PoolID, "10.93.0.5", false) // outside the range, as aux addresses may be
	lost := e.addr(p.PoolID, "10.93.0.200", false)
	view := drift.View{FetchedAt: time.Now().Add(time.Minute), Networks: map[string]drift.Network{
		"n1": {Name: "n1", IPAM: "mynet", Pools: []drift.Pool{{
			Subnet: netip.MustParsePrefix("10.93.0.0/24"), IPRange: netip.MustParsePrefix("10.93.0.128/25"),
			Aux: []netip.Addr{netip.MustParsePrefix(aux).Addr()}}}},
	}}
	ds := e.d.Doctor(view, drift.FixAll, 0)
	if len(ds) != 1 || ds[0].Object != "address "+netip.MustParsePrefix(lost).Addr().String() || !ds[0].Fixed {
		t.Fatalf("want only the lost address %s released, got %+v", lost, ds)
	}
	if _, err := e.d.RequestAddress(AddressRequest{PoolID: p.PoolID, Address: "10.93.0.5"}); err == nil {
		t.Errorf("aux address %s was released and handed out again", aux)
	}
}

// A managed plugin does not know the name Docker gives it ("mynet:latest",
// an alias): a pool is judged by the Docker networks with its subnet and
// range whatever IPAM name they show, so no name mismatch frees a pool or
// an address a container holds.
func TestDoctorJudgesPoolsBySubnetNotIPAMName(t *testing.T) {
	e := newEnv(t, DefaultRanges)
	p := e.pool("10.94.0.0/24", "", false)
	held := netip.MustParsePrefix(e.addr(p.PoolID, "", false)).Addr()
	lost := netip.MustParsePrefix(e.addr(p.PoolID, "", false)).Addr()
	view := drift.View{FetchedAt: time.Now().Add(time.Minute), Networks: map[string]drift.Network{
		"n1": {Name: "n1", IPAM: "registry.example.com/mynet:1.0", Pools: []drift.Pool{{Subnet: netip.MustParsePrefix("10.94.0.0/24")}},
			Endpoints: map[string]drift.Endpoint{"e1": {IPv4: held}}},
	}}
	ds := e.d.Doctor(view, drift.FixAll, 0)
	if len(ds) != 1 || ds[0].Kind != drift.AddressUnused || ds[0].Object != "address "+lost.String() {
		t.Fatalf("want only %s released, got %+v", lost, ds)
	}
	if u := e.d.Usage(); len(u) != 1 || u[0].Used != 1 {
		t.Errorf("pool after the doctor: %+v, want it with the held address", u)
	}
}
