package admin

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/mynet/mynet/protocol"
	"github.com/mynet/mynet/state"
)

// Exit codes scripts can rely on.
const (
	ExitOK       = 0
	ExitError    = 1 // could not read the state
	ExitUsage    = 2 // bad command line
	ExitNotFound = 3 // the network asked for does not exist
	// ExitDrift (4, doctor.go): doctor found drift it did not repair.
)

// Commands lists the subcommands Run knows.
var Commands = map[string]string{
	"networks":  "list networks",
	"endpoints": "list endpoints, all or of one NETWORK (id, id prefix or bridge)",
	"pools":     "list IPAM pools with their use",
	"ports":     "list published ports",
	"doctor":    "compare store, kernel and Docker's view; --fix repairs (exit 4: drift left, 5: --fix refused)",
	"cluster":   "cluster hosts: every host with its address, liveness and use; cluster forget HOST: drop a dead host's records",
}

// parseAnyOrder parses args whose flags may come before or after the
// positional arguments (mynet endpoints NET --json) and returns the latter.
func parseAnyOrder(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional, rest = append(positional, fs.Arg(0)), fs.Args()[1:]
	}
}

// Run runs one subcommand (args[0]) and returns its exit code.
func Run(args []string, defaultState string, stdout, stderr io.Writer) int {
	cmd := args[0]
	switch cmd {
	case "doctor":
		return runDoctor(args[1:], defaultState, stdout, stderr)
	case "cluster":
		return runCluster(args[1:], defaultState, stdout, stderr)
	}
	fs, statePath, asJSON := commandFlags("mynet "+cmd, defaultState, "inspect", stderr)
	positional, err := parseAnyOrder(fs, args[1:])
	if err != nil {
		return ExitUsage
	}
	if len(positional) > 1 || (len(positional) == 1 && cmd != "endpoints") {
		fmt.Fprintf(stderr, "mynet %s: unexpected argument %q\n", cmd, positional[len(positional)-1])
		return ExitUsage
	}
	snap, err := Load(*statePath)
	if err != nil {
		fmt.Fprintf(stderr, "mynet %s: %v\n", cmd, err)
		return ExitError
	}
	var rows any
	var table [][]string
	switch cmd {
	case "networks":
		rows, table = networks(snap)
	case "endpoints":
		filter := ""
		if len(positional) == 1 {
			filter = positional[0]
		}
		if filter != "" && findNetwork(snap, filter) == "" {
			fmt.Fprintf(stderr, "mynet endpoints: no network matches %q\n", filter)
			return ExitNotFound
		}
		rows, table = endpoints(snap, findNetwork(snap, filter))
	case "pools":
		rows, table = pools(snap)
	case "ports":
		rows, table = publishedPorts(snap)
	default:
		fmt.Fprintf(stderr, "mynet: unknown command %q\n", cmd)
		return ExitUsage
	}
	if *asJSON {
		writeJSON(stdout, rows)
	} else {
		writeTable(stdout, table)
	}
	return ExitOK
}

// commandFlags is the flag set of the command name with the two flags
// every command has: --state (the mynet to role) and --json.
func commandFlags(name, defaultState, role string, stderr io.Writer) (fs *flag.FlagSet, statePath *string, asJSON *bool) {
	fs = flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	statePath = fs.String("state", defaultState, "state file of the mynet to "+role+" (env MYNET_STATE)")
	asJSON = fs.Bool("json", false, "print JSON instead of a table")
	return fs, statePath, asJSON
}

// writeJSON writes v as the --json forms of the commands print it: indented.
func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// writeTable writes rows (the first one the header) as aligned columns.
func writeTable(w io.Writer, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func findNetwork(s Snapshot, q string) string {
	if q == "" {
		return ""
	}
	for _, n := range s.Networks {
		if n.ID == q || strings.HasPrefix(n.ID, q) || (n.Bridge != "" && n.Bridge == q) {
			return n.ID
		}
	}
	return ""
}

func networks(s Snapshot) (any, [][]string) {
	t := [][]string{{"NETWORK", "BACKEND", "LINK", "SUBNETS", "GATEWAYS", "ENDPOINTS", "OPTIONS"}}
	count := map[string]int{}
	for _, e := range s.Endpoints {
		count[e.NetworkID]++
	}
	sort.Slice(s.Networks, func(i, j int) bool { return s.Networks[i].ID < s.Networks[j].ID })
	for _, n := range s.Networks {
		var subs, gws []string
		for _, x := range append(append([]state.Subnet{}, n.IPv4...), n.IPv6...) {
			subs = append(subs, x.Pool.String())
			if x.Gateway.IsValid() {
				gws = append(gws, x.Gateway.Addr().String())
			}
		}
		linkName := n.Bridge
		if linkName == "" {
			linkName = n.Parent
		}
		var opts []string
		for k, v := range n.Options {
			opts = append(opts, k+"="+v)
		}
		sort.Strings(opts)
		if n.Internal {
			opts = append(opts, "internal")
		}
		if n.Cluster != "" {
			opts = append(opts, "cluster="+n.Cluster)
		}
		if n.VNI != 0 {
			opts = append(opts, fmt.Sprintf("vni=%d", n.VNI))
		}
		t = append(t, []string{protocol.Short(n.ID), n.Backend + modeSuffix(n.Mode), linkName, strings.Join(subs, ","),
			strings.Join(gws, ","), fmt.Sprint(count[n.ID]), strings.Join(opts, " ")})
	}
	return s.Networks, t
}

func modeSuffix(mode string) string {
	if mode == "" {
		return ""
	}
	return "/" + mode
}

func endpoints(s Snapshot, network string) (any, [][]string) {
	t := [][]string{{"ENDPOINT", "NETWORK", "IPV4", "IPV6", "MAC", "HOST LINK", "PORTS"}}
	var out []any
	sort.Slice(s.Endpoints, func(i, j int) bool { return s.Endpoints[i].ID < s.Endpoints[j].ID })
	for _, e := range s.Endpoints {
		if network != "" && e.NetworkID != network {
			continue
		}
		out = append(out, e)
		t = append(t, []string{protocol.Short(e.ID), protocol.Short(e.NetworkID), orDash(e.IPv4.String(), e.IPv4.IsValid()),
			orDash(e.IPv6.String(), e.IPv6.IsValid()), orDash(e.MAC, e.MAC != ""), orDash(e.HostIf, e.HostIf != ""), fmt.Sprint(len(e.Ports))})
	}
	if out == nil {
		out = []any{}
	}
	return out, t
}

func orDash(s string, ok bool) string {
	if !ok {
		return "-"
	}
	return s
}

func pools(s Snapshot) (any, [][]string) {
	t := [][]string{{"POOL", "CLUSTER", "RANGE", "USED", "SIZE", "USE", ""}}
	for _, p := range s.Pools {
		pct := 0.0
		if p.Size > 0 {
			pct = 100 * float64(p.Used) / float64(p.Size)
		}
		rng := "-"
		if p.Range.IsValid() {
			rng = p.Range.String()
		}
		size := fmt.Sprint(p.Size)
		if p.Size == math.MaxUint64 {
			size = ">=2^64"
		}
		t = append(t, []string{p.Pool.String(), orDash(p.Cluster, p.Cluster != ""), rng, fmt.Sprint(p.Used), size, fmt.Sprintf("%.1f%%", pct), bar(pct)})
	}
	return s.Pools, t
}

// bar draws a 20-character use bar.
func bar(pct float64) string {
	n := int(math.Round(pct / 5))
	if pct > 0 && n == 0 {
		n = 1
	}
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", 20-n) + "]"
}

type portRow struct {
	HostIP        string `json:"host_ip"`
	HostPort      uint16 `json:"host_port"`
	Proto         string `json:"proto"`
	ContainerIP   string `json:"container_ip"`
	ContainerPort uint16 `json:"container_port"`
	Endpoint      string `json:"endpoint"`
	Network       string `json:"network"`
}

func publishedPorts(s Snapshot) (any, [][]string) {
	rows := []portRow{}
	for _, e := range s.Endpoints {
		for _, p := range e.Ports {
			hip := "0.0.0.0"
			if p.HostIP.IsValid() {
				hip = p.HostIP.String()
			}
			rows = append(rows, portRow{hip, p.HostPort, p.Proto, p.ContainerIP.String(), p.ContainerPort, protocol.Short(e.ID), protocol.Short(e.NetworkID)})
			if !p.HostIP.IsValid() && p.HostPort != 0 {
				// Every address: the IPv6 side is a row of its own, to the
				// container's IPv6 address or, without one, its IPv4
				// address (proxied).
				t := p.Target6()
				rows = append(rows, portRow{"::", p.HostPort, p.Proto, t.Addr().String(), t.Port(), protocol.Short(e.ID), protocol.Short(e.NetworkID)})
			}
		}
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].HostPort < rows[j].HostPort })
	t := [][]string{{"HOST IP", "HOST PORT", "PROTO", "CONTAINER", "ENDPOINT", "NETWORK"}}
	for _, r := range rows {
		t = append(t, []string{r.HostIP, fmt.Sprint(r.HostPort), r.Proto, net.JoinHostPort(r.ContainerIP, fmt.Sprint(r.ContainerPort)), r.Endpoint, r.Network})
	}
	return rows, t
}
