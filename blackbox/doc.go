// Package blackbox holds tests only: they build the real mynet binary once,
// run it in a fresh network namespace with a state file and sockets of its
// own, and talk to it from the outside as Docker and an attacker would:
// raw protocol requests (the hostile corpus in testdata/requests.json),
// reduced capability sets, signals, the inspection commands and the metrics
// socket. The one daemon harness is daemon_test.go.
package blackbox
