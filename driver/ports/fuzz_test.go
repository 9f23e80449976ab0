package ports

import (
	"encoding/json"
	"testing"
)

// FuzzParsePortMap feeds random JSON: ParsePortMap must never panic, and
// whatever it accepts must be a valid mapping.
func FuzzParsePortMap(f *testing.F) {
	for _, s := range []string{
		`[{"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":18080,"HostPortEnd":18080}]`,
		`[{"Proto":17,"Port":81,"HostIP":"127.0.0.1","HostPort":18081,"HostPortEnd":18081}]`,
		`[{"Proto":132,"Port":9,"HostIP":"::","HostPort":0,"HostPortEnd":0}]`,
		`[{"Proto":1,"Port":80}]`,
		`[{"Proto":"tcp","port":1e3,"HostPort":-0,"HostPortEnd":65535}]`,
		`[{"Proto":6.000001,"Port":null}, 5, "x", [], {}]`,
		`{"Proto":6}`, `"[]"`, `null`, ``, `[`, `[{"HostIP":"fe80::1%eth0"}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(ms []Mapping, err error) {
			if err != nil {
				if ms != nil {
					t.Fatalf("mappings with an error: %v", ms)
				}
				return
			}
			for _, m := range ms {
				if m.Proto != TCP && m.Proto != UDP && m.Proto != SCTP {
					t.Fatalf("bad proto %q", m.Proto)
				}
				if m.ContainerPort == 0 || m.HostPortEnd < m.HostPort || (m.HostPort == 0) != (m.HostPortEnd == 0) {
					t.Fatalf("bad mapping %#v", m)
				}
				if m.HostIP.IsValid() && (m.HostIP.Is4In6() || m.HostIP.Zone() != "") {
					t.Fatalf("host IP not normalized: %v", m.HostIP)
				}
				m2 := m
				if err := m2.normalize(); err != nil || m2 != m {
					t.Fatalf("parsed mapping %#v does not normalize to itself: %v", m, err)
				}
				_ = m.String()
			}
		}
		check(ParsePortMap(string(data)))
		check(ParsePortMap(json.RawMessage(data)))
		var v any
		if json.Unmarshal(data, &v) == nil {
			check(ParsePortMap(v))
		}
	})
}
