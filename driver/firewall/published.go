package firewall

import (
	"net/netip"
	"strconv"

	"github.com/mynet/mynet/state"
)

// PublishedPorts returns, by 12-char network id, the ports that mynet's DNAT
// rules publish, as RemovePorts takes them: a start and mynet doctor compare
// them with the endpoints' records.
func (f *Firewall) PublishedPorts() (map[string][]state.PortBinding, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]state.PortBinding{}
	for _, b := range f.backends() {
		st, err := f.exact(b)
		if err != nil {
			return nil, err
		}
		ch := st.chain(tNat, chDNAT)
		if ch == nil {
			continue
		}
		for _, r := range ch.rules {
			id12, _, ok := commentNetwork(r.comment)
			if !ok {
				continue
			}
			if pb, ok := portBinding(r.words()); ok {
				out[id12] = append(out[id12], pb)
			}
		}
	}
	return out, nil
}

// portBinding reads back the binding a DNAT rule of portRule's was made
// from.
func portBinding(toks []string) (state.PortBinding, bool) {
	pp, ok := parsePortRule(toks)
	if !ok {
		return state.PortBinding{}, false
	}
	port, err := strconv.ParseUint(pp.port, 10, 16)
	if err != nil {
		return state.PortBinding{}, false
	}
	to, err := netip.ParseAddrPort(pp.to)
	if err != nil {
		return state.PortBinding{}, false
	}
	pb := state.PortBinding{Proto: pp.proto, HostPort: uint16(port), ContainerIP: to.Addr(), ContainerPort: to.Port()}
	if pp.hostIP != "" {
		if pb.HostIP, err = netip.ParseAddr(pp.hostIP); err != nil {
			return state.PortBinding{}, false
		}
	}
	return pb, true
}
