// Package hostile holds tests only: they build the real mynet binary, run it
// in a fresh network namespace and attack its sockets with hostile requests
// (testdata/requests.json) and reduced capability sets, checking that every
// refused request leaves the kernel and the store as they were.
package hostile
