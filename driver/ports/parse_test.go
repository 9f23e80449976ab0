package ports

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestParsePortMapGood(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	tests := []struct {
		name string
		in   any
		want []Mapping
	}{
		{"nil", nil, nil},
		{"empty list", []any{}, nil},
		{"empty string", "", nil},
		{"json null", "null", nil},
		{"empty json list", "[]", nil},
		{"empty raw", json.RawMessage(" "), nil},
		{
			"docker tcp sample",
			decode(t, `[{"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":18080,"HostPortEnd":18080}]`),
			[]Mapping{{Proto: TCP, HostPort: 18080, HostPortEnd: 18080, ContainerPort: 80}},
		},
		{
			"docker udp on loopback",
			decode(t, `[{"Proto":17,"Port":81,"HostIP":"127.0.0.1","HostPort":18081,"HostPortEnd":18081}]`),
			[]Mapping{{Proto: UDP, HostIP: lo, HostPort: 18081, HostPortEnd: 18081, ContainerPort: 81}},
		},
		{
			"sctp ephemeral",
			decode(t, `[{"Proto":132,"IP":"","Port":9,"HostIP":"","HostPort":0,"HostPortEnd":0}]`),
			[]Mapping{{Proto: SCTP, ContainerPort: 9}},
		},
		{
			"range",
			decode(t, `[{"Proto":6,"Port":80,"HostPort":8000,"HostPortEnd":8010}]`),
			[]Mapping{{Proto: TCP, HostPort: 8000, HostPortEnd: 8010, ContainerPort: 80}},
		},
		{
			"HostPortEnd 0 means HostPort",
			decode(t, `[{"Proto":6,"Port":80,"HostPort":8000,"HostPortEnd":0}]`),
			[]Mapping{{Proto: TCP, HostPort: 8000, HostPortEnd: 8000, ContainerPort: 80}},
		},
		{
			"optional fields missing or null, unknown keys ignored",
			decode(t, `[{"Proto":6,"Port":80,"IP":null,"HostIP":null,"Extra":[1,2]}]`),
			[]Mapping{{Proto: TCP, ContainerPort: 80}},
		},
		{
			"several entries",
			decode(t, `[{"Proto":6,"Port":80,"HostPort":8080},{"Proto":17,"Port":53,"HostIP":"::","HostPort":5353}]`),
			[]Mapping{
				{Proto: TCP, HostPort: 8080, HostPortEnd: 8080, ContainerPort: 80},
				{Proto: UDP, HostIP: netip.IPv6Unspecified(), HostPort: 5353, HostPortEnd: 5353, ContainerPort: 53},
			},
		},
		{
			"explicit 0.0.0.0 kept as IPv4 unspecified",
			decode(t, `[{"Proto":6,"Port":80,"HostIP":"0.0.0.0","HostPort":8080}]`),
			[]Mapping{{Proto: TCP, HostIP: netip.IPv4Unspecified(), HostPort: 8080, HostPortEnd: 8080, ContainerPort: 80}},
		},
		{
			"v4-mapped host IP unmapped, brackets accepted",
			decode(t, `[{"Proto":6,"Port":80,"HostIP":"[::ffff:127.0.0.1]","HostPort":8080}]`),
			[]Mapping{{Proto: TCP, HostIP: lo, HostPort: 8080, HostPortEnd: 8080, ContainerPort: 80}},
		},
		{
			"JSON string",
			`[{"Proto":6,"Port":80,"HostPort":8080,"HostPortEnd":8080}]`,
			[]Mapping{{Proto: TCP, HostPort: 8080, HostPortEnd: 8080, ContainerPort: 80}},
		},
		{
			"json.RawMessage",
			json.RawMessage(`[{"Proto":17,"Port":80}]`),
			[]Mapping{{Proto: UDP, ContainerPort: 80}},
		},
		{
			"[]byte",
			[]byte(`[{"Proto":132,"Port":80}]`),
			[]Mapping{{Proto: SCTP, ContainerPort: 80}},
		},
		{
			"json.Number values (UseNumber decoders)",
			[]any{map[string]any{"Proto": json.Number("6"), "Port": json.Number("80"), "HostPort": json.Number("8080.0")}},
			[]Mapping{{Proto: TCP, HostPort: 8080, HostPortEnd: 8080, ContainerPort: 80}},
		},
		{
			"Go integers and []map[string]any",
			[]map[string]any{{"Proto": 6, "Port": uint16(80), "HostPort": int64(8080)}},
			[]Mapping{{Proto: TCP, HostPort: 8080, HostPortEnd: 8080, ContainerPort: 80}},
		},
		{
			"Proto by name, keys in other case",
			decode(t, `[{"proto":"TCP","port":80,"hostport":8080}]`),
			[]Mapping{{Proto: TCP, HostPort: 8080, HostPortEnd: 8080, ContainerPort: 80}},
		},
		{
			"max ports",
			decode(t, `[{"Proto":6,"Port":65535,"HostPort":65535,"HostPortEnd":65535}]`),
			[]Mapping{{Proto: TCP, HostPort: 65535, HostPortEnd: 65535, ContainerPort: 65535}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePortMap(tc.in)
			if err != nil {
				t.Fatalf("ParsePortMap: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestParsePortMapBad(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want string // exact message, or a substring if prefixed with "~"
	}{
		{"icmp", `[{"Proto":6,"Port":80},{"Proto":1,"Port":80}]`,
			"portmap entry 2: Proto 1 (icmp) cannot be published: use tcp (6), udp (17) or sctp (132)"},
		{"icmpv6", `[{"Proto":58,"Port":80}]`,
			"portmap entry 1: Proto 58 (ipv6-icmp) cannot be published: use tcp (6), udp (17) or sctp (132)"},
		{"unknown proto number", `[{"Proto":99,"Port":80}]`,
			"portmap entry 1: Proto 99 cannot be published: use tcp (6), udp (17) or sctp (132)"},
		{"proto name", `[{"Proto":"icmp","Port":80}]`,
			`portmap entry 1: Proto "icmp" cannot be published: use tcp (6), udp (17) or sctp (132)`},
		{"proto fraction", `[{"Proto":6.5,"Port":80}]`, "portmap entry 1: Proto 6.5 is not a whole number"},
		{"proto bool", `[{"Proto":true,"Port":80}]`, "portmap entry 1: Proto must be a number, got a boolean (true)"},
		{"proto missing", `[{"Port":80}]`, "portmap entry 1: Proto is missing: use tcp (6), udp (17) or sctp (132)"},
		{"proto null", `[{"Proto":null,"Port":80}]`, "~Proto is missing"},
		{"port missing", `[{"Proto":6,"HostPort":80}]`, "portmap entry 1: Port (the container port) is missing"},
		{"port zero", `[{"Proto":6,"Port":0}]`, "portmap entry 1: Port 0: the container port must be 1-65535"},
		{"port too big", `[{"Proto":6,"Port":70000}]`, "portmap entry 1: Port 70000 is out of range: ports are 0-65535"},
		{"port string", `[{"Proto":6,"Port":"80"}]`, `portmap entry 1: Port "80" is a string: expected a number 0-65535`},
		{"port object", `[{"Proto":6,"Port":{}}]`, "portmap entry 1: Port must be a number, got an object"},
		{"host port negative", `[{"Proto":6,"Port":80,"HostPort":-1}]`, "portmap entry 1: HostPort -1 is out of range: ports are 0-65535"},
		{"host port huge", `[{"Proto":6,"Port":80,"HostPort":1e300}]`, "~HostPort 1e+300 is out of range"},
		{"host port end below", `[{"Proto":6,"Port":80,"HostPort":8080,"HostPortEnd":8000}]`,
			"portmap entry 1: HostPortEnd 8000 is below HostPort 8080: the host port range is empty"},
		{"host port end alone", `[{"Proto":6,"Port":80,"HostPortEnd":8000}]`, "~HostPortEnd 8000 without HostPort"},
		{"host ip bad", `[{"Proto":6,"Port":80,"HostIP":"localhost"}]`, `portmap entry 1: HostIP "localhost" is not an IP address`},
		{"host ip number", `[{"Proto":6,"Port":80,"HostIP":5}]`, "~HostIP must be a string"},
		{"host ip zone", `[{"Proto":6,"Port":80,"HostIP":"fe80::1%eth0"}]`, "~an address with a zone cannot be used"},
		{"container ip bad", `[{"Proto":6,"Port":80,"IP":"x"}]`, `portmap entry 1: IP "x" is not an IP address`},
		{"entry not object", `[6]`, "~portmap entry 1: expected an object"},
		{"entry null", `[null]`, "~got null"},
		{"object not list", `{"Proto":6,"Port":80}`, "portmap: expected a list of port bindings, got a single object"},
		{"number", 6.0, "portmap: expected a list of port bindings, got a number (6)"},
		{"bool", true, "~got a boolean"},
		{"bad json", `[{"Proto":6`, "~portmap: not valid JSON"},
		{"double encoded", `"[]"`, "~got a string"},
		{"go struct", struct{}{}, "~got a struct {}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePortMap(tc.in)
			if err == nil {
				t.Fatalf("no error, got %v", got)
			}
			if sub, ok := strings.CutPrefix(tc.want, "~"); ok {
				if !strings.Contains(err.Error(), sub) {
					t.Fatalf("error %q does not contain %q", err, sub)
				}
			} else if err.Error() != tc.want {
				t.Fatalf("error\n got %q\nwant %q", err, tc.want)
			}
			if got != nil {
				t.Fatalf("mappings returned with the error: %v", got)
			}
		})
	}
}

func TestParsePortMapLongStringCut(t *testing.T) {
	_, err := ParsePortMap(`[{"Proto":"` + strings.Repeat("x", 10000) + `","Port":80}]`)
	if err == nil || len(err.Error()) > 300 {
		t.Fatalf("want a short error, got %d bytes", len(err.Error()))
	}
}

func TestMappingString(t *testing.T) {
	m := Mapping{Proto: TCP, HostPort: 8000, HostPortEnd: 8010, ContainerPort: 80}
	if s := m.String(); s != "0.0.0.0:8000-8010->80/tcp" {
		t.Errorf("Mapping.String = %q", s)
	}
}

func decode(t testing.TB, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}
