#!/usr/bin/env bash
# Proof that integration/uml/run.sh works: builds the selftest package (dummy, ipvlan l2/l3,
# macvlan, 802.1q in a fresh netns, via netlink) as a static test binary and runs it
# inside the UML kernel. Exits with the test's status (125: UML trouble, see run.sh).
#
#   bash integration/uml/selftest.sh [extra test flags, e.g. -test.run KernelLinkTypes]
#
# Only a static, non-race binary is built: -race binaries cannot run under UML (the guest's
# address space ends at 512 GiB, below ThreadSanitizer's fixed shadow mappings). README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
GO=${GO:-$(command -v go 2>/dev/null || echo /usr/local/go/bin/go)}

tmp=$(mktemp -d /tmp/mynet-uml-selftest.XXXXXXXX)
trap 'rm -rf -- "$tmp"' EXIT

cd "$ROOT"
CGO_ENABLED=0 "$GO" test -c -tags umltest -o "$tmp/selftest.test" ./integration/uml/selftest/
# -test.timeout below run.sh's UML_TIMEOUT: a hang ends with Go's goroutine dump, not a kill.
bash "$ROOT/integration/uml/run.sh" "$tmp/selftest.test" -test.v -test.count=1 -test.timeout=120s "$@"
