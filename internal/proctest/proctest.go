// Package proctest runs and stops the processes that tests start (daemons,
// etcd servers, one-shot commands). It imports nothing of mynet, so that any
// test helper can use it.
package proctest

import (
	"os"
	"syscall"
	"time"
)

// Stop asks p to end: SIGCONT (a paused process cannot act on SIGTERM), then
// SIGTERM, and SIGKILL if nothing came from exited within grace. It returns
// once it has received from exited, which must send or close when p has been
// waited for.
func Stop[T any](p *os.Process, exited <-chan T, grace time.Duration) {
	p.Signal(syscall.SIGCONT)
	p.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(grace):
		p.Kill()
		<-exited
	}
}
