#!/usr/bin/env bash
# Installs what `make test` needs on a fresh Debian machine, and says what it
# installs. Every package here is used by a test that starts the real program:
#   clang-19 llvm-19 libbpf-dev bpftool  rebuild the BPF objects (check-generated)
#   socat nginx python3 lsof psmisc      real holders, and the tools `who` is compared with
#   redis-server haproxy memcached apache2
#                                         real daemons of the restart corpus (internal/corpus)
#   iproute2                              network namespaces for tests with their own sysctls
#   qemu-system-x86 busybox-static cpio   the kernel matrix (Debian kernels under qemu)
#   logrotate rsyslog prometheus          real collectors for the output sinks
#   podman runc systemd                   the container image, the systemd unit
#   docker.io containerd                  real docker: the test starts its own dockerd and containerd
#   containernetworking-plugins           real containerd through CRI: a pod's own network (bridge, host-local)
#   mmdebstrap systemd-container          units under a real systemd as pid 1 (a Debian rootfs, nspawn -b)
#   chromium                              the report's HTML page in a real browser
#   tmux                                  text output on a real terminal
#   man-db                                the man page rendered without warnings (man -l)
#   gcc                                   cgo for go test -race (make gorace)
# As root, missing packages are installed with apt-get. Otherwise it lists
# what is missing and what that means, and exits 0: the tests that need root
# skip (and fail under BINDWATCH_REQUIRE_BPF=1, as CI sets it).
set -euo pipefail

packages=(
	clang-19 llvm-19 libbpf-dev bpftool
	socat nginx python3 lsof psmisc
	redis-server haproxy memcached apache2
	iproute2
	qemu-system-x86 busybox-static cpio
	logrotate rsyslog prometheus
	podman runc systemd
	docker.io containerd
	containernetworking-plugins
	mmdebstrap systemd-container
	chromium
	tmux
	man-db
	gcc
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "test-deps: every test dependency is installed"
	exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
	echo "test-deps: missing ${missing[*]}; run 'make test' as root on Debian to install them (the tests that need them will skip, or fail under BINDWATCH_REQUIRE_BPF=1)" >&2
	exit 0
fi
echo "test-deps: installing ${missing[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Services in these packages (nginx, apache2, rsyslog, prometheus, docker,
# containerd) must not start on their own: the tests start their own
# instances on private ports, sockets and state directories.
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	created_policy=1
fi
status=0
# The log is a fresh file (mktemp): a fixed name in /tmp could be a symlink
# planted there to make root overwrite another file.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1 || status=$?
[ $created_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
if [ $status != 0 ]; then
	echo "test-deps: apt-get install failed (exit $status); its log:" >&2
	tail -20 "$log" >&2
	exit $status
fi
echo "test-deps: installed ${missing[*]}"
