package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mynet/mynet/cluster/etcdtest"
)

func withEndpoints(e []string) opt { return func(c *Config) { c.Endpoints = e } }
func withTLS(t *tls.Config) opt    { return func(c *Config) { c.TLS = t } }

// TestTLSEtcdWithClientCertificates runs the cluster calls against a real
// etcd that serves TLS only and requires client certificates, configured as
// a user does: etcd:// endpoints and the three --cluster-* files.
func TestTLSEtcdWithClientCertificates(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{TLS: true})
	files := srv.TLS()
	endpoints, err := ParseEndpoints("etcd://"+srv.HostPort(), true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(endpoints[0], "https://") {
		t.Fatalf("etcd:// with TLS settings gave %v, want https", endpoints)
	}
	good, err := TLSConfig(files.CA, files.ClientCert, files.ClientKey)
	if err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	a := host(t, srv, "tlsa", withEndpoints(endpoints), withTLS(good))
	if err := a.Register(ctx); err != nil {
		t.Fatalf("register over TLS: %v", err)
	}
	n, _, err := a.Join(ctx, PoolSpec{Name: "blue", Subnet: pfx("10.62.0.0/24")})
	if err != nil {
		t.Fatalf("join over TLS: %v", err)
	}
	if _, err := a.Claim(ctx, n.Name, ip("10.62.0.7"), "endpoint"); err != nil {
		t.Fatalf("claim over TLS: %v", err)
	}

	noClientCert, err := TLSConfig(files.CA, "", "")
	if err != nil {
		t.Fatal(err)
	}
	wrongCA, err := TLSConfig(files.OtherCA, files.ClientCert, files.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := ParseEndpoints("etcd://"+srv.HostPort(), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		opts  []opt
		cause string // what the error must say beyond naming etcd
	}{
		{"no client certificate", []opt{withEndpoints(endpoints), withTLS(noClientCert)}, "TLS with etcd failed: remote error: tls:"}, // "bad certificate" or "certificate required", by TLS version,
		{"a CA that did not sign etcd's certificate", []opt{withEndpoints(endpoints), withTLS(wrongCA)}, "TLS with etcd failed: tls: failed to verify certificate"},
		{"plain http to a TLS etcd", []opt{withEndpoints(plain)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := host(t, srv, "tlsb", append(tc.opts, withTimeout(2*time.Second))...)
			err := c.Register(ctx)
			if err == nil {
				t.Fatal("register succeeded")
			}
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "etcd at "+c.Where()) {
				t.Fatalf("error %q does not name etcd and %s", err, c.Where())
			}
			if !strings.Contains(err.Error(), tc.cause) {
				t.Fatalf("error %q does not say %q", err, tc.cause)
			}
		})
	}
	// Nothing of the refused host reached etcd.
	hosts, err := a.Hosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if h.ID == "tlsb" {
			t.Fatalf("a refused client left its host record: %+v", h)
		}
	}
}
