package cluster

import (
	"crypto/tls"
	"errors"
	"net"
	"net/url"
	"sync"
	"time"
)

// The etcd client retries a failed TLS handshake until the call's deadline,
// so a wrong CA or a missing client certificate would only ever read "did not
// answer within 5s". After a call fails, tlsProbe dials the endpoints itself
// and keeps what the handshake said, so the error names the real cause. It
// probes at most once per probeEvery, each dial bounded by probeTimeout, so a
// stopped etcd costs little more.
const (
	probeEvery   = 10 * time.Second
	probeTimeout = time.Second
)

type tlsProbe struct {
	mu   sync.Mutex
	at   time.Time
	last error
}

// problem returns the handshake error of the first endpoint that refused
// this client's TLS settings, or nil (plain http, or every handshake that
// could be tried went through).
func (p *tlsProbe) problem(endpoints []string, cfg *tls.Config) error {
	if cfg == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.at.IsZero() && time.Since(p.at) < probeEvery {
		return p.last
	}
	p.at, p.last = time.Now(), nil
	for _, ep := range endpoints {
		u, err := url.Parse(ep)
		if err != nil || u.Scheme != "https" {
			continue
		}
		if err := handshake(u, cfg); err != nil {
			p.last = err
			break
		}
	}
	return p.last
}

// handshake completes a TLS handshake with the endpoint and waits briefly
// for an alert: under TLS 1.3 a server that wants a client certificate
// refuses it only after the client's side of the handshake is done. A dial
// that fails or a peer that says nothing is not a TLS problem.
func handshake(u *url.URL, cfg *tls.Config) error {
	c := cfg.Clone()
	if c.ServerName == "" {
		c.ServerName = u.Hostname()
	}
	raw, err := net.DialTimeout("tcp", u.Host, probeTimeout)
	if err != nil {
		return nil
	}
	conn := tls.Client(raw, c)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(probeTimeout))
	if err := conn.Handshake(); err != nil {
		if isTimeout(err) {
			return nil
		}
		return err
	}
	if _, err := conn.Read(make([]byte, 1)); err != nil && isRemoteError(err) {
		return err
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isRemoteError matches the alert the peer sent, which crypto/tls reports
// as "remote error: tls: ..." (an unexported type).
func isRemoteError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return true
	}
	return false
}
