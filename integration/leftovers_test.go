//go:build integration

package integration

// "Nothing is left behind": what exists of ours on the host (links, rules,
// addresses, store records) before and after a test, judged against what
// Docker still knows.

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mynet/mynet/state"
)

// leakCheck watches one test: the networks it created and everything of
// ours (links, rules, addresses, state records) that appears during it.
type leakCheck struct {
	t      *testing.T
	nets   []NetworkInfo
	before inventory
	// keepLinks are links the test made itself (e.g. a pre-existing bridge
	// handed to a network) and removes itself.
	keepLinks map[string]bool
}

// bridgeTest starts a test of networks of ours: the shared plugin runs, and
// nothing of the test's networks may be left when it ends.
func bridgeTest(t *testing.T) *leakCheck {
	t.Helper()
	withPlugin(t)
	return assertNoBridgeLeftovers(t)
}

// forEachIPAM runs test as a subtest once per IPAM setup (Docker's, ours),
// with the `docker network create` arguments of that IPAM; i tells the two
// runs apart in names.
func forEachIPAM(t *testing.T, test func(t *testing.T, i int, ipam []string, lc *leakCheck)) {
	for i, setup := range ipamSetups {
		t.Run(setup.name, func(t *testing.T) { test(t, i, setup.args, bridgeTest(t)) })
	}
}

// netPair creates two networks of ours on ipam, NAME-a<i> and NAME-b<i>,
// on free /24s near 10.<base>.x.0 and 10.<base+1>.x.0, both watched by lc.
func netPair(t *testing.T, lc *leakCheck, ipam []string, name string, i, base int) (a, b string) {
	t.Helper()
	a, b = fmt.Sprintf("%s-a%d", name, i), fmt.Sprintf("%s-b%d", name, i)
	lc.net(a, mynetNetArgs(ipam, "--subnet", freeV4Subnet(t, base).String())...)
	lc.net(b, mynetNetArgs(ipam, "--subnet", freeV4Subnet(t, base+1).String())...)
	return a, b
}

// assertNoBridgeLeftovers snapshots what exists now and, once the test and
// all its cleanups (containers, networks) are done, checks that nothing of
// the test's networks is left: no mn- link, no veth, no mynet:<id> rule, no
// MYNET-*-<id> chain, no address of their subnets, no network, endpoint or
// pool record in the plugin's state. Call it FIRST in a test, so its cleanup
// runs last.
func assertNoBridgeLeftovers(t *testing.T) *leakCheck {
	t.Helper()
	lc := &leakCheck{t: t, before: takeInventory(), keepLinks: map[string]bool{}}
	t.Cleanup(func() {
		var probs, first []string
		start := time.Now()
		_ = eventually(15*time.Second, func() error {
			probs = lc.problems()
			if first == nil {
				first = probs
			}
			if len(probs) > 0 {
				return fmt.Errorf("leftovers")
			}
			return nil
		})
		if len(probs) == 0 && len(first) > 0 {
			t.Logf("leftover check: clean after %s; first look found %v", time.Since(start).Round(100*time.Millisecond), first)
		}
		for _, p := range probs {
			t.Errorf("leftover after the test's networks were removed: %s", p)
		}
	})
	return lc
}

// net creates a network (removed at cleanup) and watches it.
func (lc *leakCheck) net(name string, args ...string) NetworkInfo {
	lc.t.Helper()
	n := netCreate(lc.t, name, args...)
	lc.nets = append(lc.nets, n)
	return n
}

// watch adds a network created some other way (compose).
func (lc *leakCheck) watch(n NetworkInfo) { lc.nets = append(lc.nets, n) }

func (lc *leakCheck) problems() []string {
	inv := takeInventory()
	dv, err := dockerNow()
	if err != nil {
		return []string{err.Error()}
	}
	var ps []string
	add := func(f string, a ...any) { ps = append(ps, fmt.Sprintf(f, a...)) }

	// The test's own networks: nothing of them may remain.
	for _, n := range lc.nets {
		id12 := n.ID[:12]
		if dv.nets[id12] {
			add("network %s (%s) still exists in Docker", n.Name, id12)
			continue
		}
		if br := mynetBridge(n); !lc.keepLinks[br] {
			if _, ok := inv.links[br]; ok {
				add("bridge %s of removed network %s", br, n.Name)
			}
		}
		for l := range inv.rules {
			if strings.Contains(l, id12) {
				add("rule of removed network %s: %s", n.Name, l)
			}
		}
		for a, dev := range inv.addrs {
			for _, s := range n.Subnets() {
				if s.Contains(a.Addr()) {
					add("address %s of removed network %s still on %s", a, n.Name, dev)
				}
			}
		}
		if inv.stErr == nil {
			if _, ok := inv.st.networks[n.ID]; ok {
				add("state still has network %s (%s)", n.Name, id12)
			}
			for _, e := range inv.st.endpoints {
				if e.NetworkID == n.ID {
					add("state still has endpoint %s of removed network %s", e.ID[:12], n.Name)
				}
			}
			for _, p := range inv.st.pools {
				for _, s := range n.Subnets() {
					if p.Pool.Overlaps(s) && !dv.pools[p.Pool.Masked()] {
						add("state still has pool %s (%s) of removed network %s", p.ID, p.Pool, n.Name)
					}
				}
			}
		}
	}

	// Anything of ours that appeared during the test and belongs to no
	// network or endpoint Docker knows.
	var linkNames []string
	for l := range inv.links {
		linkNames = append(linkNames, l)
	}
	sort.Strings(linkNames)
	for _, l := range linkNames {
		if _, old := lc.before.links[l]; old || lc.keepLinks[l] {
			continue
		}
		if m := reLinkNet.FindStringSubmatch(l); m != nil && !dv.nets[m[1]] {
			add("link %s belongs to no Docker network", l)
		}
		if m := reLinkEndpt.FindStringSubmatch(l); m != nil && !dv.eps[m[1]] {
			add("link %s (master %q) belongs to no Docker endpoint", l, inv.links[l])
		}
	}
	for l := range inv.rules {
		if lc.before.rules[l] {
			continue
		}
		for _, m := range reRuleIDs.FindAllStringSubmatch(l, -1) {
			id := m[1]
			if !dv.nets[id] {
				add("rule of no Docker network: %s", l)
				break
			}
		}
	}
	if inv.stErr != nil {
		add("cannot read the plugin state: %v", inv.stErr)
		return ps
	}
	for id := range inv.st.networks {
		if _, old := lc.before.st.networks[id]; !old && !dv.nets[id[:12]] {
			add("state has network %s that Docker does not know", id[:12])
		}
	}
	for id, e := range inv.st.endpoints {
		if _, old := lc.before.st.endpoints[id]; !old && !dv.eps[id[:12]] {
			add("state has endpoint %s (network %s, %s) that Docker does not know", id[:12], e.NetworkID[:12], e.IPv4)
		}
	}
	for id, p := range inv.st.pools {
		if _, old := lc.before.st.pools[id]; !old && !dv.pools[p.Pool.Masked()] {
			add("state has pool %s that no Docker network uses", id)
		}
	}
	return ps
}

// inventory is what exists of ours on the host at one moment.
type inventory struct {
	links map[string]string       // link name -> master
	rules map[string]bool         // "ip4|ip6 table: line" for lines that mention mynet/MYNET
	addrs map[netip.Prefix]string // host address -> link
	st    storeRecords            // plugin state (a copy of the file)
	stErr error
}

var (
	reRuleIDs   = regexp.MustCompile(`mynet:([0-9a-f]{12})`)
	reCounters  = regexp.MustCompile(`\[\d+:\d+\]`)
	reLinkNet   = regexp.MustCompile(`^mn-([0-9a-f]{12})$`)
	reLinkEndpt = regexp.MustCompile(`^mn[hc]([0-9a-f]{12})$`)
)

func takeInventory() inventory {
	inv := inventory{links: map[string]string{}, rules: map[string]bool{}}
	if out, err := exec.Command("ip", "-j", "link", "show").Output(); err == nil {
		var ls []struct{ Ifname, Master string }
		if json.Unmarshal(out, &ls) == nil {
			for _, l := range ls {
				inv.links[l.Ifname] = l.Master
			}
		}
	}
	inv.addrs, _ = hostAddrs("")
	for fam, tool := range map[string]string{"ip4": "iptables-save", "ip6": "ip6tables-save"} {
		for _, l := range ruleLines(tool) {
			if strings.Contains(strings.ToLower(l), "mynet") {
				inv.rules[fam+" "+l] = true
			}
		}
	}
	inv.st, inv.stErr = readStore()
	return inv
}

// storeRecords is the plugin's records, read from a copy of its state file (the
// running plugin holds the file's lock, so the product's store cannot open
// the file itself, not even read-only).
type storeRecords struct {
	networks  map[string]state.Network
	endpoints map[string]state.Endpoint
	pools     map[string]state.Pool
	raw       [32]byte // sha256 of the file
}

func readStore() (storeRecords, error) {
	st := storeRecords{networks: map[string]state.Network{}, endpoints: map[string]state.Endpoint{}, pools: map[string]state.Pool{}}
	data, err := os.ReadFile(plugin.State)
	if err != nil {
		return st, err
	}
	st.raw = sha256.Sum256(data)
	f, err := os.CreateTemp("", "mit-state-*.db")
	if err != nil {
		return st, err
	}
	path := f.Name()
	defer os.Remove(path)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return st, err
	}
	f.Close()
	s, err := state.Open(path, state.Options{ReadOnly: true, LockTimeout: time.Second})
	if err != nil {
		return st, fmt.Errorf("open copy of %s: %w", plugin.State, err)
	}
	defer s.Close()
	err = s.View(func(tx *state.Tx) error {
		ns, err := tx.Networks()
		if err != nil {
			return err
		}
		for _, n := range ns {
			st.networks[n.ID] = n
		}
		es, err := tx.Endpoints()
		if err != nil {
			return err
		}
		for _, e := range es {
			st.endpoints[e.ID] = e
		}
		ps, err := tx.Pools()
		if err != nil {
			return err
		}
		for _, p := range ps {
			st.pools[p.ID] = p
		}
		return nil
	})
	return st, err
}

// dockerView is what Docker knows now: network ids, endpoint ids and the
// subnets of networks that use our IPAM (all as 12-character prefixes).
type dockerView struct {
	nets  map[string]bool
	eps   map[string]bool
	pools map[netip.Prefix]bool
}

func dockerNow() (dockerView, error) {
	v := dockerView{nets: map[string]bool{}, eps: map[string]bool{}, pools: map[netip.Prefix]bool{}}
	nets, err := allNetworks()
	if err != nil {
		return v, err
	}
	for _, n := range nets {
		v.nets[n.ID[:12]] = true
		for _, c := range n.Containers {
			if len(c.EndpointID) >= 12 {
				v.eps[c.EndpointID[:12]] = true
			}
		}
		if n.IPAM.Driver == pluginName {
			for _, c := range n.IPAM.Config {
				if p, err := netip.ParsePrefix(c.Subnet); err == nil {
					v.pools[p.Masked()] = true
				}
			}
		}
	}
	return v, nil
}

// hostSnapshot is what a failed request must not change: our links, rules and
// state, and where the plugin log stood. Other users (a benchmark on another
// mynet instance) may create and remove networks meanwhile; diff tells their
// objects apart by asking Docker.
type hostSnapshot struct {
	inventory
	logOff int64
}

func takeSnapshot() hostSnapshot {
	return hostSnapshot{logOff: plugin.LogSize(), inventory: takeInventory()}
}

// reFailedCreate finds the network id of a refused CreateNetwork in the
// plugin's (debug, text) log.
var reFailedCreate = regexp.MustCompile(`call=NetworkDriver.CreateNetwork ids="network=([0-9a-f]{12})`)

func diffSets(what string, before, after map[string]bool) []string {
	var d []string
	for k := range after {
		if !before[k] {
			d = append(d, what+" added: "+k)
		}
	}
	for k := range before {
		if !after[k] {
			d = append(d, what+" removed: "+k)
		}
	}
	sort.Strings(d)
	return d
}

// diff lists what changed between s and after that a refused network create
// may have caused:
//   - the refused network's own objects (its id from the plugin log): an
//     mn-<id> link, a rule or chain with <id>, a state record;
//   - a new mn* link, or a new rule with a network id, of no Docker network;
//   - a removed rule of a network Docker still has;
//   - any change to our rules that belong to no network (base chains, jumps);
//   - any change to the plugin's state records, and with rawMustMatch any
//     byte of the state file (nothing should have been written).
func (s hostSnapshot) diff(after hostSnapshot, rawMustMatch bool) []string {
	var d []string
	dv, err := dockerNow()
	if err != nil {
		return []string{err.Error()}
	}
	failed := map[string]bool{}
	for _, m := range reFailedCreate.FindAllStringSubmatch(plugin.LogSince(s.logOff, 1000), -1) {
		failed[m[1]] = true
	}
	for id := range failed {
		if _, ok := after.links["mn-"+id]; ok {
			d = append(d, "bridge mn-"+id+" of the refused network exists")
		}
	}
	for l := range after.links {
		if _, had := s.links[l]; had || reLinkEndpt.MatchString(l) || !strings.HasPrefix(l, "mn") {
			continue
		}
		if m := reLinkNet.FindStringSubmatch(l); m != nil && dv.nets[m[1]] {
			continue
		}
		d = append(d, "link added: "+l)
	}
	ids := func(l string) []string {
		var out []string
		for _, m := range reRuleIDs.FindAllStringSubmatch(l, -1) {
			out = append(out, m[1])
		}
		return out
	}
	base := func(set map[string]bool) map[string]bool {
		out := map[string]bool{}
		for l := range set {
			if len(ids(l)) == 0 {
				out[l] = true
			}
		}
		return out
	}
	d = append(d, diffSets("base rule", base(s.rules), base(after.rules))...)
	for l := range after.rules {
		for _, id := range ids(l) {
			if failed[id] || (!s.rules[l] && !dv.nets[id]) {
				d = append(d, "rule of no Docker network: "+l)
				break
			}
		}
	}
	for l := range s.rules {
		if after.rules[l] {
			continue
		}
		for _, id := range ids(l) {
			if dv.nets[id] {
				d = append(d, "rule of existing network "+id+" removed: "+l)
				break
			}
		}
	}
	if s.stErr != nil || after.stErr != nil {
		return append(d, fmt.Sprintf("state unreadable: before %v, after %v", s.stErr, after.stErr))
	}
	keys := func(st storeRecords) map[string]bool {
		m := map[string]bool{}
		for k, n := range st.networks {
			b, _ := json.Marshal(n)
			m["network "+k+" "+string(b)] = true
		}
		for k, e := range st.endpoints {
			b, _ := json.Marshal(e)
			m["endpoint "+k+" "+string(b)] = true
		}
		for k, p := range st.pools {
			b, _ := json.Marshal(p)
			m["pool "+k+" "+string(b)] = true
		}
		return m
	}
	d = append(d, diffSets("state record", keys(s.st), keys(after.st))...)
	if rawMustMatch && !bytes.Equal(s.st.raw[:], after.st.raw[:]) {
		d = append(d, "state file bytes changed (nothing should have been written)")
	}
	return d
}
