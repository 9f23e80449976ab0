package proctest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"
)

// RunIsolated runs argv under `unshare -n`, in a network namespace of its
// own, so that a binary under test cannot touch the host's links, rules or
// sockets, and returns its combined output and exit code. env, when not nil,
// is added to this process's environment. A command still running after
// timeout is killed and reported as exit -1, with a line saying so.
func RunIsolated(t testing.TB, timeout time.Duration, env []string, argv ...string) (string, int) {
	t.Helper()
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatal("unshare (util-linux) is needed to run a command in its own network namespace")
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", append([]string{"-n"}, argv...)...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case ctx.Err() != nil:
		return string(out) + "\n(still running after " + timeout.String() + ")", -1
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatal(err)
	return "", 0
}
