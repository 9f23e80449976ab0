package firewall

import (
	"slices"
	"strings"
)

// OwnedNetworks returns the networks (12-char id, bridge and owner) that
// have rules of mynet's, made by any instance, sorted by bridge name.
func (f *Firewall) OwnedNetworks() ([]OwnedNetwork, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	seen := map[OwnedNetwork]bool{}
	for _, b := range f.backends() {
		st, err := f.exact(b)
		if err != nil {
			return nil, err
		}
		for _, tbl := range ourTables {
			t := st.table(tbl)
			for _, cname := range t.order {
				for _, r := range t.chains[cname].rules {
					id, owner, ok := commentNetwork(r.comment)
					if !ok {
						continue
					}
					// The bridge is the output interface: every network has
					// "-o BR" rules (isolation), and an input interface may be
					// a trusted host interface, not a bridge.
					// iptables-save prints interface names unquoted:
					// blanks split the words that matter here.
					words := strings.Fields(r.text)
					for i := 0; i+1 < len(words); i++ {
						if words[i] == "-o" && !strings.HasSuffix(words[i+1], "+") {
							seen[OwnedNetwork{ID: id, Bridge: words[i+1], Owner: owner}] = true
						}
					}
				}
			}
		}
	}
	out := make([]OwnedNetwork, 0, len(seen))
	for o := range seen {
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b OwnedNetwork) int {
		if c := strings.Compare(a.Bridge, b.Bridge); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Owned returns the bridge names that currently have rules of this
// instance's networks (or rules that name no instance).
func (f *Firewall) Owned() ([]string, error) {
	nets, err := f.OwnedNetworks()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, o := range nets {
		if o.Owner != "" && o.Owner != f.owner {
			continue
		}
		if len(out) == 0 || out[len(out)-1] != o.Bridge {
			out = append(out, o.Bridge)
		}
	}
	return out, nil
}
