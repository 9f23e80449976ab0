package proctest

import (
	"bufio"
	"os/exec"
	"strings"
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

func TestRunIsolated(t *testing.T) {
	out, code := RunIsolated(t, time.Minute, []string{"PT_WORD=hello"}, "sh", "-c", "echo $PT_WORD; ip -o link | wc -l; exit 3")
	if code != 3 || out != "hello\n1\n" { // the new namespace has lo only
		t.Errorf("exit %d, output %q; want 3 and hello, 1 link", code, out)
	}
	if out, code := RunIsolated(t, 200*time.Millisecond, nil, "sleep", "60"); code != -1 || !strings.Contains(out, "still running") {
		t.Errorf("a command past its timeout: exit %d, %q", code, out)
	}
}
