package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// kernelDir writes a kernel cache directory with config lines and module
// files.
func kernelDir(t *testing.T, config []string, modules ...string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "modules"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(strings.Join(config, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, m := range modules {
		if err := os.WriteFile(filepath.Join(dir, "modules", m), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func goodConfig() []string {
	var config []string
	for _, name := range append(requiredConfig, guestArches["amd64"].config...) {
		config = append(config, name+"=y")
	}
	return append(config,
		"CONFIG_INET_DIAG=m", "CONFIG_INET_TCP_DIAG=m", "CONFIG_INET_UDP_DIAG=m", "CONFIG_INET_RAW_DIAG=y", "CONFIG_VETH=m",
		`CONFIG_MODPROBE_PATH="/sbin/modprobe"`, "# CONFIG_UNUSED is not set")
}

func TestCheckKernelDir(t *testing.T) {
	dir := kernelDir(t, goodConfig(), "udp_diag.ko.xz", "veth.ko.xz", "inet_diag.ko.xz", "tcp_diag.ko.xz")
	modules, err := checkKernelDir(dir, guestArches["amd64"])
	if err != nil {
		t.Fatal(err)
	}
	// Load order follows guestModules; raw_diag is built in.
	if want := []string{"inet_diag.ko.xz", "tcp_diag.ko.xz", "udp_diag.ko.xz", "veth.ko.xz"}; !reflect.DeepEqual(modules, want) {
		t.Errorf("modules = %q, want %q", modules, want)
	}
}

func TestCheckKernelDirMissingModule(t *testing.T) {
	dir := kernelDir(t, goodConfig(), "inet_diag.ko", "tcp_diag.ko")
	if _, err := checkKernelDir(dir, guestArches["amd64"]); err == nil || !strings.Contains(err.Error(), "module udp_diag") {
		t.Errorf("checkKernelDir without udp_diag.ko = %v, want an error naming it", err)
	}
}

func TestCheckKernelDirConfig(t *testing.T) {
	config := strings.Join(goodConfig(), "\n")
	config = strings.Replace(config, "CONFIG_IPV6=y", "CONFIG_IPV6=m", 1)
	config = strings.Replace(config, "CONFIG_DEBUG_INFO_BTF=y", "# CONFIG_DEBUG_INFO_BTF is not set", 1)
	config = strings.Replace(config, "CONFIG_INET_RAW_DIAG=y", "", 1)
	dir := kernelDir(t, strings.Split(config, "\n"), "inet_diag.ko", "tcp_diag.ko", "udp_diag.ko", "veth.ko")
	_, err := checkKernelDir(dir, guestArches["amd64"])
	if err == nil || !strings.Contains(err.Error(), "lacks CONFIG_IPV6, CONFIG_DEBUG_INFO_BTF, CONFIG_INET_RAW_DIAG") {
		t.Errorf("checkKernelDir = %v, want it to name IPV6, DEBUG_INFO_BTF and INET_RAW_DIAG", err)
	}
}

func TestExtractTarget(t *testing.T) {
	tests := map[string]string{
		"./boot/vmlinuz-6.1.0-28-amd64":                                  "vmlinuz",
		"./boot/config-6.1.0-28-amd64":                                   "config",
		"./boot/System.map-6.1.0-28-amd64":                               "",
		"./lib/modules/6.1.0-28-amd64/kernel/net/ipv4/inet_diag.ko":      "modules/inet_diag.ko",
		"./usr/lib/modules/6.12.9-amd64/kernel/net/ipv4/tcp_diag.ko.xz":  "modules/tcp_diag.ko.xz",
		"./lib/modules/6.1.0-28-amd64/kernel/net/unix/unix_diag.ko":      "",
		"./lib/modules/6.1.0-28-amd64/kernel/net/tipc/diag.ko":           "",
		"./usr/share/doc/linux-image-6.1.0-28-amd64/inet_diag.ko.readme": "",
	}
	for name, want := range tests {
		if got := extractTarget(name); got != want {
			t.Errorf("extractTarget(%q) = %q, want %q", name, got, want)
		}
	}
}
