package engine

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// ImportBusybox makes image ref in the engine from the host's busybox-static
// (/bin/busybox and a link per applet), as integration/setup.sh does for the
// host's engine: no registry is needed. An existing ref is kept.
func (e *Engine) ImportBusybox(ref string) error {
	if _, err := e.Docker("image", "inspect", ref); err == nil {
		return nil
	}
	rootfs, err := busyboxTar("/bin/busybox")
	if err != nil {
		return err
	}
	cmd := e.Command("docker", "import", "-c", "ENV PATH=/bin", "-c", `CMD ["sh"]`, "-", ref)
	cmd.Stdin = bytes.NewReader(rootfs)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("engine %s: docker import %s: %v: %s", e.Name, ref, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func busyboxTar(busybox string) ([]byte, error) {
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("busybox-static: %w", err)
	}
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", busybox, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []struct {
		name string
		mode int64
	}{{"bin", 0o755}, {"etc", 0o755}, {"tmp", 0o1777}, {"proc", 0o755}, {"sys", 0o755}, {"dev", 0o755}} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d.name + "/", Mode: d.mode}); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bin))}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + applet, Linkname: "busybox", Mode: 0o777}); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// CopyImage copies image ref from another engine (host: its DOCKER_HOST
// address, "" for the client's default, the host's engine) into this one
// with docker save | docker load.
func (e *Engine) CopyImage(host, ref string) error {
	save := exec.Command("docker", "save", ref)
	save.Env = os.Environ()
	if host != "" {
		save.Env = append(save.Env, "DOCKER_HOST="+host)
	}
	var saveErr strings.Builder
	save.Stderr = &saveErr
	out, err := save.StdoutPipe()
	if err != nil {
		return err
	}
	load := e.Command("docker", "load")
	load.Stdin = out
	if err := save.Start(); err != nil {
		return fmt.Errorf("engine %s: docker save %s: %w", e.Name, ref, err)
	}
	loadOut, loadErr := load.CombinedOutput()
	if err := save.Wait(); err != nil {
		return fmt.Errorf("engine %s: docker save %s: %v: %s", e.Name, ref, err, strings.TrimSpace(saveErr.String()))
	}
	if loadErr != nil {
		return fmt.Errorf("engine %s: docker load %s: %v: %s", e.Name, ref, loadErr, strings.TrimSpace(string(loadOut)))
	}
	return nil
}
