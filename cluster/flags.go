package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
)

// ParseEndpoints reads --cluster: etcd://HOST:PORT[,HOST:PORT...], or a
// comma-separated list of http:// or https:// URLs. etcd:// means https when
// secure (TLS settings given), http otherwise.
func ParseEndpoints(s string, secure bool) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("no etcd endpoint given: use etcd://HOST:2379[,HOST:2379...]")
	}
	scheme := "http"
	if secure {
		scheme = "https"
	}
	var out []string
	for i, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		hostPort := item
		switch {
		case strings.HasPrefix(item, "etcd://"):
			hostPort = strings.TrimPrefix(item, "etcd://")
		case strings.HasPrefix(item, "http://"), strings.HasPrefix(item, "https://"):
			u, err := url.Parse(item)
			if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") {
				return nil, fmt.Errorf("etcd endpoint %q: want http(s)://HOST:PORT", item)
			}
			hostPort, scheme = u.Host, u.Scheme
		case i == 0:
			return nil, fmt.Errorf("etcd endpoint %q: start the list with etcd://, http:// or https://", item)
		}
		host, port, err := net.SplitHostPort(hostPort)
		if err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("etcd endpoint %q: want HOST:PORT, e.g. 10.0.0.5:2379", item)
		}
		out = append(out, scheme+"://"+net.JoinHostPort(host, port))
	}
	return out, nil
}

// TLSConfig loads --cluster-ca, --cluster-cert and --cluster-key. All empty:
// nil (plain TCP). A client certificate needs both cert and key.
func TLSConfig(ca, cert, key string) (*tls.Config, error) {
	if ca == "" && cert == "" && key == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("--cluster-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cluster-ca %s: no PEM certificate in it", ca)
		}
		cfg.RootCAs = pool
	}
	if (cert == "") != (key == "") {
		return nil, errors.New("--cluster-cert and --cluster-key go together: give both or neither")
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("--cluster-cert/--cluster-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// RouteSource is the address this host would send from to reach endpoint's
// host: the default --advertise. A UDP connect picks the route and sends
// nothing.
func RouteSource(endpoint string) (netip.Addr, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return netip.Addr{}, fmt.Errorf("etcd endpoint %q is not a URL", endpoint)
	}
	c, err := net.Dial("udp", u.Host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("no route to etcd at %s to choose --advertise from: %w", u.Host, err)
	}
	defer c.Close()
	a := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	if a.IsLoopback() {
		return netip.Addr{}, fmt.Errorf("the route to etcd at %s leaves from loopback address %s, which other hosts cannot reach: give --advertise", u.Host, a)
	}
	return a, nil
}
