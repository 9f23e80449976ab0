package proctest

import (
	"bufio"
	"os/exec"
	"testing"
	"time"
)

// start runs script in sh and returns once it has printed its first line.
func start(t *testing.T, script string) (*exec.Cmd, chan struct{}) {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	bufio.NewReader(out).ReadString('\n')
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	return cmd, exited
}

func TestStopEndsWithSIGTERM(t *testing.T) {
	cmd, exited := start(t, "echo ready; exec sleep 60")
	Stop(cmd.Process, exited, time.Minute)
	if ws := cmd.ProcessState; ws == nil || ws.String() != "signal: terminated" {
		t.Fatalf("process state %v, want terminated by SIGTERM", ws)
	}
}

func TestStopKillsWhatIgnoresSIGTERM(t *testing.T) {
	cmd, exited := start(t, "trap '' TERM; echo ready; while :; do sleep 0.1; done")
	Stop(cmd.Process, exited, 500*time.Millisecond)
	if ws := cmd.ProcessState; ws == nil || ws.String() != "signal: killed" {
		t.Fatalf("process state %v, want killed", ws)
	}
}
