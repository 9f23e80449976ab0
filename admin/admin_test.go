package admin

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/mynet/mynet/internal/testutil"
)

// A listener closed under Serve (the daemon's shutdown) ends it without an
// error, so the log shows no ERROR line at every stop.
func TestServeEndsQuietlyWhenTheListenerCloses(t *testing.T) {
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "admin.sock"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Serve(context.Background(), ln, Handlers{}) }()
	time.Sleep(50 * time.Millisecond) // let Serve reach Accept
	ln.Close()
	if err := testutil.Receive(t, done, 10*time.Second, "Serve did not return after its listener closed"); err != nil {
		t.Fatalf("Serve after the listener closed: %v", err)
	}
}
