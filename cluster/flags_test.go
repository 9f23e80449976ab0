package cluster

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseEndpoints(t *testing.T) {
	for _, tc := range []struct {
		in     string
		secure bool
		want   []string
		err    string
	}{
		{"etcd://10.0.0.5:2379,10.0.0.6:2379", false, []string{"http://10.0.0.5:2379", "http://10.0.0.6:2379"}, ""},
		{"etcd://10.0.0.5:2379", true, []string{"https://10.0.0.5:2379"}, ""},
		{"etcd://[fd00::5]:2379", false, []string{"http://[fd00::5]:2379"}, ""},
		{"http://a:1,https://b:2", false, []string{"http://a:1", "https://b:2"}, ""},
		{"10.0.0.5:2379", false, nil, "start the list with etcd://"},
		{"etcd://10.0.0.5", false, nil, "want HOST:PORT"},
		{"http://a:1/x", false, nil, "want http(s)://HOST:PORT"},
		{"", false, nil, "no etcd endpoint"},
	} {
		got, err := ParseEndpoints(tc.in, tc.secure)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseEndpoints(%q) = %v, %v; want error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseEndpoints(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestTLSConfigRefusesHalfAPair(t *testing.T) {
	if c, err := TLSConfig("", "", ""); c != nil || err != nil {
		t.Fatalf("no TLS settings: %v, %v", c, err)
	}
	if _, err := TLSConfig("", "cert.pem", ""); err == nil || !strings.Contains(err.Error(), "go together") {
		t.Fatalf("cert without key: %v", err)
	}
	if _, err := TLSConfig("/nonexistent/ca.pem", "", ""); err == nil || !strings.Contains(err.Error(), "--cluster-ca") {
		t.Fatalf("missing CA: %v", err)
	}
}

func TestRouteSourceRefusesLoopback(t *testing.T) {
	if _, err := RouteSource("http://127.0.0.1:2379"); err == nil || !strings.Contains(err.Error(), "give --advertise") {
		t.Fatalf("loopback route: %v", err)
	}
}
