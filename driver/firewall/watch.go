package firewall

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// WatchRuleset calls changed, from one goroutine of its own, after each
// commit to the nf_tables ruleset of the calling thread's network namespace
// (iptables-nft, ip6tables-nft and nft all commit through it), until ctx
// ends. Commits that follow each other while changed runs lead to one more
// call, not one each.
//
// It is why Docker's rules cannot stay above ours for long: Docker 20.10
// inserts its forwarding accepts at the top of FORWARD when it creates a
// bridge network, and until EnsureBase puts ours back, its
// "-i br-X ! -o br-X -j ACCEPT" lets that network's containers into ours.
// The kernel announces every commit on the NFNLGRP_NFTABLES group, so the
// caller's EnsureBase follows Docker's change within milliseconds rather than
// at the next periodic check. The legacy iptables backend announces nothing:
// there the periodic check is all there is.
//
// It returns an error when it cannot subscribe; once subscribed it returns
// nil when ctx ends.
func WatchRuleset(ctx context.Context, changed func()) error {
	sock, err := nl.Subscribe(unix.NETLINK_NETFILTER, unix.NFNLGRP_NFTABLES)
	if err != nil {
		return fmt.Errorf("subscribe to nf_tables changes: %w", err)
	}
	stop := context.AfterFunc(ctx, sock.Close) // ends a Receive under way
	defer stop()

	kick := make(chan struct{}, 1)
	done := make(chan struct{})
	workCtx, endWork := context.WithCancel(ctx)
	go func() {
		defer close(done)
		for {
			select {
			case <-workCtx.Done():
				return
			case <-kick:
				changed()
			}
		}
	}()
	defer func() { endWork(); <-done }()

	for {
		msgs, _, err := sock.Receive()
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case errors.Is(err, unix.ENOBUFS):
			// Announcements were lost while the buffer was full: some
			// commit happened.
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			sock.Close()
			return fmt.Errorf("read nf_tables changes: %w", err)
		case !hasNewGen(msgs):
			continue
		}
		select {
		case kick <- struct{}{}:
		default: // a call is already due
		}
	}
}

// hasNewGen reports whether msgs end a commit: the kernel sends
// NFT_MSG_NEWGEN after the table, chain and rule messages of each one.
func hasNewGen(msgs []syscall.NetlinkMessage) bool {
	for _, m := range msgs {
		if m.Header.Type == msgNewGen {
			return true
		}
	}
	return false
}
