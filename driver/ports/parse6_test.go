package ports

import (
	"net/netip"
	"strings"
	"testing"
)

// IPv6 host addresses in a port map: bracketed as Docker's CLI writes them,
// or bare; a lone bracket, a prefix or a zone is refused, naming the value.
func TestParseIPv6HostIP(t *testing.T) {
	for in, want := range map[string]netip.Addr{
		"::1": netip.IPv6Loopback(), "[::1]": netip.IPv6Loopback(), "[2001:db8::5]": netip.MustParseAddr("2001:db8::5"),
		"::": netip.IPv6Unspecified(), "::ffff:10.0.0.1": netip.MustParseAddr("10.0.0.1"),
	} {
		ms, err := ParsePortMap([]any{map[string]any{"Proto": float64(6), "Port": float64(80), "HostIP": in}})
		if err != nil || len(ms) != 1 || ms[0].HostIP != want {
			t.Errorf("HostIP %q: got %v, %v; want %s", in, ms, err, want)
		}
	}
	for _, in := range []string{"[::1", "::1]", "::1/128", "[[::1]]", "::1 -j ACCEPT", "fe80::1%eth0", "[fe80::1%lo]"} {
		_, err := ParsePortMap([]any{map[string]any{"Proto": float64(6), "Port": float64(80), "HostIP": in}})
		if err == nil || !strings.Contains(err.Error(), "HostIP") {
			t.Errorf("HostIP %q: got %v, want an error naming HostIP", in, err)
		}
	}
}
