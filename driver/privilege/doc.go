// Package privilege holds no code, only tests that show what the daemon
// needs: the real binary runs in a fresh network namespace under setpriv
// with reduced capability sets (caps_test.go), and its sockets and state
// file must be private to root (files_test.go).
package privilege
