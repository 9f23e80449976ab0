package state

import (
	"net/netip"
	"strconv"
	"time"
)

// Pool is an address pool handed to Docker by our IPAM. Its ID is what Docker
// stores and passes back, so it must stay decodable across upgrades.
type Pool struct {
	ID           string            `json:"id"`
	AddressSpace string            `json:"address_space"`
	Pool         netip.Prefix      `json:"pool"`
	Range        netip.Prefix      `json:"range,omitzero"` // --ip-range; zero = whole pool
	V6           bool              `json:"v6,omitempty"`
	Automatic    bool              `json:"automatic,omitempty"` // cut from the default ranges
	Cluster      string            `json:"cluster,omitempty"`   // the cluster network it belongs to (--ipam-opt network=)
	Options      map[string]string `json:"options,omitempty"`
	Created      time.Time         `json:"created"`
}

// Address kinds.
const (
	KindGateway  = "gateway"
	KindAux      = "aux"
	KindEndpoint = "endpoint"
)

// Address is one allocated address of a pool.
type Address struct {
	Kind    string    `json:"kind,omitempty"`
	MAC     string    `json:"mac,omitempty"`
	Created time.Time `json:"created"`
}

// Subnet is one subnet of a network as Docker's IPAM data gave it.
type Subnet struct {
	Pool    netip.Prefix            `json:"pool"`
	Gateway netip.Prefix            `json:"gateway,omitzero"` // address with the pool's prefix length
	Aux     map[string]netip.Prefix `json:"aux,omitempty"`
}

// Network is a network created through our network driver.
type Network struct {
	ID      string            `json:"id"`
	Backend string            `json:"backend"`
	Options map[string]string `json:"options,omitempty"` // driver options exactly as given
	IPv4    []Subnet          `json:"ipv4,omitempty"`
	IPv6    []Subnet          `json:"ipv6,omitempty"`

	EnableIPv6 bool `json:"enable_ipv6,omitempty"`
	Internal   bool `json:"internal,omitempty"`

	// Bridge backend.
	Bridge        string `json:"bridge,omitempty"`
	BridgeCreated bool   `json:"bridge_created,omitempty"` // we made it, so we delete it
	MTU           int    `json:"mtu,omitempty"`
	ICC           bool   `json:"icc"`
	Masquerade    bool   `json:"masquerade"`
	HostBindingV4 string `json:"host_binding_ipv4,omitempty"`
	IfacePrefix   string `json:"iface_prefix,omitempty"`
	// Docker 28's gateway modes per family ("" = nat), see driver/options.go.
	GatewayModeV4 string   `json:"gateway_mode_ipv4,omitempty"`
	GatewayModeV6 string   `json:"gateway_mode_ipv6,omitempty"`
	InhibitIPv4   bool     `json:"inhibit_ipv4,omitempty"` // no IPv4 address on the bridge
	TrustedIfs    []string `json:"trusted_host_interfaces,omitempty"`
	// SysctlsBefore: on a bridge mynet did not create, the settings it
	// changed (key like "net/ipv4/conf/br0/route_localnet") and the value
	// each had before; they are put back when the network goes.
	SysctlsBefore map[string]string `json:"sysctls_before,omitempty"`
	// GatewaysAdded: on a bridge mynet did not create, the gateway
	// addresses its create added. An address the bridge already had is
	// the user's and stays when the network goes.
	GatewaysAdded []netip.Prefix `json:"gateways_added,omitempty"`

	// Cluster network (--ipam-opt network=NAME) this network belongs to.
	Cluster string `json:"cluster,omitempty"`
	// vxlan backend: the device on the bridge and what it was made with, so
	// a restart rebuilds it without asking etcd.
	VXLAN     string     `json:"vxlan,omitempty"`
	VNI       uint32     `json:"vni,omitempty"`
	VTEP      netip.Addr `json:"vtep,omitzero"` // this host's underlay address
	VXLANPort int        `json:"vxlan_port,omitempty"`

	// macvlan / ipvlan backends.
	Parent        string `json:"parent,omitempty"`
	ParentCreated bool   `json:"parent_created,omitempty"`
	Mode          string `json:"mode,omitempty"`
	Flag          string `json:"flag,omitempty"`

	Created time.Time `json:"created"`
}

// PortBinding is one published port of an endpoint: the host port that
// driver/ports holds and driver/firewall forwards to ContainerIP, stored as
// it is held and programmed. HostIP zero means every host address, IPv4 and
// IPv6. ContainerIPv6, set only with HostIP zero on a dual-stack endpoint,
// is where the IPv6 side goes (ContainerIP is then the IPv4 address).
type PortBinding struct {
	Proto         string     `json:"proto"`
	HostIP        netip.Addr `json:"host_ip,omitzero"`
	HostPort      uint16     `json:"host_port"`
	ContainerIP   netip.Addr `json:"container_ip"`
	ContainerPort uint16     `json:"container_port"`
	ContainerIPv6 netip.Addr `json:"container_ipv6,omitzero"`
}

// Target6 is where the binding's IPv6 host side goes: ContainerIPv6 when
// set, else ContainerIP (of either family: the IPv6 side of an IPv4-only
// endpoint is proxied to its IPv4 address).
func (b PortBinding) Target6() netip.AddrPort {
	if b.ContainerIPv6.IsValid() {
		return netip.AddrPortFrom(b.ContainerIPv6, b.ContainerPort)
	}
	return netip.AddrPortFrom(b.ContainerIP, b.ContainerPort)
}

// Translated returns the parts of b that are DNAT rules, one binding per
// rule, each with a host IP (zero: every address of its family) and a
// container address of the same family and no ContainerIPv6:
//
//   - HostIP zero: the rule to ContainerIP and, with ContainerIPv6, the
//     IPv6 rule to it;
//   - a host IP of the container address's family: b;
//   - an IPv6 host IP to an IPv4 container, or ::1 (the kernel never routes
//     a packet from ::1 off lo, so DNAT cannot serve it): none, the holding
//     socket proxies those.
func (b PortBinding) Translated() []PortBinding {
	v6 := b.ContainerIPv6
	b.ContainerIPv6 = netip.Addr{}
	switch {
	case b.HostPort == 0 || !b.HostIP.IsValid():
		out := []PortBinding{b}
		if v6.IsValid() {
			b.ContainerIP = v6
			out = append(out, b)
		}
		return out
	case b.HostIP.Is4() != b.ContainerIP.Is4(), b.HostIP == netip.IPv6Loopback():
		return nil
	}
	return []PortBinding{b}
}

// String renders the binding like "0.0.0.0:8080->10.0.0.2:80/tcp"; a zero
// HostIP (every address) shows as 0.0.0.0, a ContainerIPv6 after a comma.
func (b PortBinding) String() string {
	host := "0.0.0.0:" + strconv.Itoa(int(b.HostPort))
	if b.HostIP.IsValid() {
		host = netip.AddrPortFrom(b.HostIP, b.HostPort).String()
	}
	ctr := ":" + strconv.Itoa(int(b.ContainerPort))
	if b.ContainerIP.IsValid() {
		ctr = netip.AddrPortFrom(b.ContainerIP, b.ContainerPort).String()
	}
	if b.ContainerIPv6.IsValid() {
		ctr += "," + netip.AddrPortFrom(b.ContainerIPv6, b.ContainerPort).String()
	}
	return host + "->" + ctr + "/" + b.Proto
}

// Endpoint is one container interface on one of our networks.
type Endpoint struct {
	ID          string        `json:"id"`
	NetworkID   string        `json:"network_id"`
	HostIf      string        `json:"host_if"`      // host end (veth) or the link before it moves
	ContainerIf string        `json:"container_if"` // name Docker moves into the sandbox
	MAC         string        `json:"mac,omitempty"`
	IPv4        netip.Prefix  `json:"ipv4,omitzero"`
	IPv6        netip.Prefix  `json:"ipv6,omitzero"`
	SandboxKey  string        `json:"sandbox,omitempty"`
	Ports       []PortBinding `json:"ports,omitempty"`
	Created     time.Time     `json:"created"`
}
