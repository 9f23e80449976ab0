package state

import (
	"encoding/json"
	"net/netip"
	"testing"
)

// An endpoint's published ports as a state file stores them: the field
// names are the file format and must keep decoding.
const storedPorts = `[{"proto":"tcp","host_port":8080,"container_ip":"10.0.0.2","container_port":80},` +
	`{"proto":"udp","host_ip":"::1","host_port":53,"container_ip":"fd00::2","container_port":5353}]`

func TestPortBindingEncoding(t *testing.T) {
	want := []PortBinding{
		{Proto: "tcp", HostPort: 8080, ContainerIP: netip.MustParseAddr("10.0.0.2"), ContainerPort: 80},
		{Proto: "udp", HostIP: netip.MustParseAddr("::1"), HostPort: 53, ContainerIP: netip.MustParseAddr("fd00::2"), ContainerPort: 5353},
	}
	var got []PortBinding
	if err := json.Unmarshal([]byte(storedPorts), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("decoded %v, want %v", got, want)
	}
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != storedPorts {
		t.Fatalf("encoded\n%s\nwant\n%s", b, storedPorts)
	}
}

func TestPortBindingString(t *testing.T) {
	for _, c := range []struct {
		b    PortBinding
		want string
	}{
		{PortBinding{Proto: "udp", HostIP: netip.MustParseAddr("::1"), HostPort: 53, ContainerIP: netip.MustParseAddr("10.0.0.2"), ContainerPort: 5353}, "[::1]:53->10.0.0.2:5353/udp"},
		{PortBinding{Proto: "tcp", HostPort: 8080, ContainerIP: netip.MustParseAddr("fd00::2"), ContainerPort: 80}, "0.0.0.0:8080->[fd00::2]:80/tcp"},
		{PortBinding{Proto: "sctp", HostIP: netip.MustParseAddr("192.0.2.1"), HostPort: 9, ContainerPort: 9}, "192.0.2.1:9->:9/sctp"},
	} {
		if got := c.b.String(); got != c.want {
			t.Errorf("String = %q, want %q", got, c.want)
		}
	}
}
