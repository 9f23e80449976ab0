// Package drift holds what `mynet doctor` and the daemon's background
// reconcile compare: Docker's own view of networks and endpoints, read from
// the Docker API, and the drift found against the store and the kernel.
package drift

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// View is Docker's view at one moment.
type View struct {
	// FetchedAt is when the asking began: store records created after
	// FetchedAt - grace are too young to judge.
	FetchedAt time.Time          `json:"fetched_at"`
	Networks  map[string]Network `json:"networks"` // by full network id
}

// Network is one Docker network.
type Network struct {
	Name   string `json:"name"`
	Driver string `json:"driver"`
	IPAM   string `json:"ipam"` // the IPAM driver's name
	// Pools are the subnets (and ip-ranges) Docker got from the IPAM driver.
	Pools     []Pool              `json:"pools,omitempty"`
	Endpoints map[string]Endpoint `json:"endpoints"` // by full endpoint id
}

// Pool is one IPAM config entry of a network.
type Pool struct {
	Subnet  netip.Prefix `json:"subnet"`
	IPRange netip.Prefix `json:"ip_range,omitzero"`
	Gateway netip.Addr   `json:"gateway,omitzero"`
	Aux     []netip.Addr `json:"aux,omitempty"`
}

// Endpoint is one container's attachment.
type Endpoint struct {
	Container string     `json:"container"`
	IPv4      netip.Addr `json:"ipv4,omitzero"`
	IPv6      netip.Addr `json:"ipv6,omitzero"`
}

// Drift is one difference found, and what --fix did about it.
type Drift struct {
	Kind   string `json:"kind"`   // e.g. "endpoint_unknown_to_docker"
	Object string `json:"object"` // what it is about (ids, names)
	Detail string `json:"detail"`
	Fixed  bool   `json:"fixed"`
	Error  string `json:"error,omitempty"` // why the fix failed, or why there is none
}

// Fix decides which drifts a doctor run repairs; nil repairs none. It is
// asked only about drifts that have a repair.
type Fix func(Drift) bool

// FixAll repairs every drift found: `mynet doctor --fix`.
func FixAll(Drift) bool { return true }

// Apply runs repair when there is one and fix approves dr, and returns dr
// with the outcome: Fixed, or the repair's Error.
func Apply(dr Drift, fix Fix, repair func() error) Drift {
	if repair != nil && fix != nil && fix(dr) {
		if err := repair(); err != nil {
			dr.Error = err.Error()
		} else {
			dr.Fixed = true
		}
	}
	return dr
}

// Drift kinds; also the kinds of repair the driver reports (metrics label
// mynet_repairs_total{kind}).
const (
	NetworkUnknownToDocker  = "network_unknown_to_docker"
	EndpointUnknownToDocker = "endpoint_unknown_to_docker"
	PoolUnused              = "pool_unused"
	AddressUnused           = "address_unused"
	LinksMissing            = "links"
	RulesMissing            = "firewall_rules"
	EndpointDetached        = "endpoint_attach"
	EndpointLinkMissing     = "endpoint_link_missing"
	OrphanLink              = "orphan_link"
	OrphanRules             = "orphan_firewall_rules"
	OrphanPort              = "orphan_published_port"
	// Cluster (--cluster): etcd's records of this host against its own.
	ClusterMembership     = "cluster_membership"      // a cluster network joined again, or left
	ClusterAddress        = "cluster_address"         // an address claimed again in etcd, or given back
	ClusterEndpointRecord = "cluster_endpoint_record" // an endpoint record published again, or withdrawn
	ClusterDataPlane      = "cluster_data_plane"      // a VXLAN device's entries programmed again from etcd
)

// ParseDockerHost gives the socket path of a unix:// Docker host, the only
// kind mynet talks to.
func ParseDockerHost(host string) (string, error) {
	sock, ok := strings.CutPrefix(host, "unix://")
	if !ok || !strings.HasPrefix(sock, "/") {
		return "", fmt.Errorf("%q: give unix:///path/to/docker.sock (mynet reads Docker's view over a unix socket only)", host)
	}
	return sock, nil
}

// dockerGetter returns a GET of Docker's API on a unix socket, decoding the
// JSON answer into out, and the function that closes its connections. Each
// call gets callTimeout: a dockerd that hangs costs that long, no more.
func dockerGetter(ctx context.Context, socket string, callTimeout time.Duration) (get func(path string, out any) error, done func()) {
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}}}
	return func(path string, out any) error {
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker"+path, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return fmt.Errorf("cannot reach Docker at %s: %w (is dockerd running? --docker-host sets the socket)", socket, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			return errNotFound
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("docker GET %s: %s", path, resp.Status)
		}
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("docker GET %s: %w", path, err)
		}
		return nil
	}, c.CloseIdleConnections
}

// EngineAPIVersion asks Docker for the newest API version it speaks
// ("1.51" for Docker 28.5).
func EngineAPIVersion(ctx context.Context, socket string, callTimeout time.Duration) (string, error) {
	get, done := dockerGetter(ctx, socket, callTimeout)
	defer done()
	var v struct{ ApiVersion string }
	if err := get("/version", &v); err != nil {
		return "", err
	}
	if v.ApiVersion == "" {
		return "", fmt.Errorf("docker GET /version: no ApiVersion in the answer")
	}
	return v.ApiVersion, nil
}

// Fetch reads Docker's view from the Docker API on a unix socket. Each call
// to Docker gets callTimeout: a dockerd that hangs costs that long, no more.
func Fetch(ctx context.Context, socket string, callTimeout time.Duration) (View, error) {
	v := View{FetchedAt: time.Now().UTC(), Networks: map[string]Network{}}
	getAny, done := dockerGetter(ctx, socket, callTimeout)
	defer done()
	get := func(path string, out any) error { return getAny("/v1.41"+path, out) }
	var list []struct {
		ID string `json:"Id"`
	}
	if err := get("/networks", &list); err != nil {
		return v, err
	}
	for _, l := range list {
		var n dockerNetwork
		if err := get("/networks/"+url.PathEscape(l.ID), &n); err != nil {
			if err == errNotFound { // removed meanwhile
				continue
			}
			return v, err
		}
		v.Networks[n.ID] = n.convert()
	}
	return v, nil
}

var errNotFound = fmt.Errorf("not found")

// dockerNetwork is the part of GET /networks/{id} we read.
type dockerNetwork struct {
	ID     string `json:"Id"`
	Name   string
	Driver string
	IPAM   struct {
		Driver string
		Config []struct {
			Subnet, IPRange, Gateway string
			AuxiliaryAddresses       map[string]string
		}
	}
	Containers map[string]struct {
		Name, EndpointID, IPv4Address, IPv6Address string
	}
}

func (n dockerNetwork) convert() Network {
	out := Network{Name: n.Name, Driver: n.Driver, IPAM: n.IPAM.Driver, Endpoints: map[string]Endpoint{}}
	for _, c := range n.IPAM.Config {
		var p Pool
		p.Subnet, _ = netip.ParsePrefix(c.Subnet)
		p.IPRange, _ = netip.ParsePrefix(c.IPRange)
		p.Gateway = addrOf(c.Gateway)
		for _, a := range c.AuxiliaryAddresses {
			if x := addrOf(a); x.IsValid() {
				p.Aux = append(p.Aux, x)
			}
		}
		out.Pools = append(out.Pools, p)
	}
	for _, c := range n.Containers {
		if c.EndpointID != "" {
			out.Endpoints[c.EndpointID] = Endpoint{Container: c.Name, IPv4: addrOf(c.IPv4Address), IPv6: addrOf(c.IPv6Address)}
		}
	}
	return out
}

// addrOf reads "10.0.0.2/24" or "10.0.0.2"; "" gives the zero Addr.
func addrOf(s string) netip.Addr {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr()
	}
	a, _ := netip.ParseAddr(s)
	return a
}

// Mature says whether a record created at created can be judged against a
// view: Docker asks for an address and creates an endpoint before the
// container shows in its inspect output, so younger records may be in use.
func (v View) Mature(created time.Time, grace time.Duration) bool {
	return !created.IsZero() && created.Before(v.FetchedAt.Add(-grace))
}
