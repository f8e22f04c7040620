#!/usr/bin/env bash
# Build the banyan/sched image without pulling anything.
#
#   deploy/docker/build.sh            # tag banyan/sched:dev
#   BANYAN_IMAGE=banyan/sched:v1 deploy/docker/build.sh
#
# Steps: compile the three binaries (README, "Three binaries"): banyand,
# the full one, statically linked (cgo is required: go-nvml does not
# compile without it); sched-client, the thin client (no cgo, static by
# itself), which execs banyand for the daemon commands; and sched, the
# front, which execs sched-client; check that all are static, add a static busybox taken from Debian's busybox-static package
# (so agents can run `sh -c ...` tasks), then `docker build --pull=false` a
# FROM-scratch image.
#
# Environment:
#   BANYAN_IMAGE     tag (default banyan/sched:dev)
#   BANYAN_CONTEXT   build-context directory (default bin/docker-context,
#                    under the repository root; it is rebuilt every time)
#   BANYAN_BUSYBOX   path to a static busybox binary to use; "none" builds an
#                    image without a shell (tasks can only exec /bin/banyand
#                    and /bin/sched);
#                    unset: a host busybox if it is static, else
#                    `apt-get download busybox-static` (cached in bin/).
#   BANYAN_VERSION   release name stamped into both (buildinfo.Version,
#                    shown by `sched version` and `server members`);
#                    unset: Go's module and VCS data say it
#   GO               go command (default go)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
image=${BANYAN_IMAGE:-banyan/sched:dev}
ctx=${BANYAN_CONTEXT:-$root/bin/docker-context}
cache=$root/bin/docker-cache
go=${GO:-go}
version=${BANYAN_VERSION:-}

say() { printf 'build.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

is_static() {
	# `file` says "statically linked" (or "static-pie linked"); ldd refuses.
	local f=$1
	if command -v file >/dev/null 2>&1; then
		file -L "$f" | grep -Eq 'statically linked|static-pie linked' || return 1
	fi
	! ldd "$f" >/dev/null 2>&1
}

[[ -z $version || $version =~ ^[A-Za-z0-9._+-]+$ ]] || die "BANYAN_VERSION '$version': letters, digits and ._+- only"
command -v docker >/dev/null 2>&1 || die "docker not found"
command -v "$go" >/dev/null 2>&1 || die "$go not found"
command -v gcc >/dev/null 2>&1 || die "gcc not found (cgo is required: go-nvml does not build with CGO_ENABLED=0)"

rm -rf "$ctx"
mkdir -p "$ctx/rootfs/bin" "$ctx/rootfs/etc" "$ctx/rootfs/tmp" "$ctx/state/data" "$ctx/state/work" "$ctx/state/tls" "$ctx/state/tls-ca" "$cache"
chmod 1777 "$ctx/rootfs/tmp"

# 1. banyand, statically linked. netgo/osusergo keep name resolution and
# user lookups in pure Go (a static glibc getaddrinfo would want the host's
# NSS modules at run time). go-nvml's dlopen stays; in the image it finds no
# libnvidia-ml, which only matters to agents without --no-gpu.
say "compiling static banyand and sched${version:+ $version}"
xflags=''
[[ -n $version ]] && xflags=" -X github.com/banyan-sched/banyan/api/buildinfo.Version=$version"
(cd "$root" && CGO_ENABLED=1 "$go" build -trimpath -tags netgo,osusergo \
	-ldflags "-s -w -linkmode external -extldflags -static$xflags" \
	-o "$ctx/rootfs/bin/banyand" ./cmd/sched) 2> >(grep -v -e 'statically linked applications requires at runtime' \
	-e '^/usr/bin/ld: .*in function' -e '^# github.com/banyan-sched/banyan/cmd/sched$' >&2)
is_static "$ctx/rootfs/bin/banyand" || die "bin/banyand is not statically linked"
# sched, the thin client: without cgo it is static and pure Go as it is
# (tags as the Makefile's THIN_TAGS).
(cd "$root" && CGO_ENABLED=0 "$go" build -trimpath -tags schedthin,grpcnotrace \
	-ldflags "-s -w$xflags" -o "$ctx/rootfs/bin/sched-client" ./cmd/sched)
is_static "$ctx/rootfs/bin/sched-client" || die "bin/sched-client is not statically linked"
# sched, the front: it hands job submissions to the client helper and execs
# sched-client for the rest.
(cd "$root" && CGO_ENABLED=0 "$go" build -trimpath -ldflags "-s -w" -o "$ctx/rootfs/bin/sched" ./cmd/schedfront)
is_static "$ctx/rootfs/bin/sched" || die "bin/sched is not statically linked"

# 2. busybox, for shell tasks.
busybox=${BANYAN_BUSYBOX:-}
if [[ -z $busybox ]]; then
	host_bb=$(command -v busybox || true)
	if [[ -n $host_bb ]] && is_static "$host_bb"; then
		busybox=$host_bb
	else
		deb=$(ls "$cache"/busybox-static_*.deb 2>/dev/null | head -n1 || true)
		if [[ -z $deb ]] && command -v apt-get >/dev/null 2>&1; then
			say "downloading busybox-static with apt-get"
			(cd "$cache" && apt-get download busybox-static >/dev/null 2>&1) || true
			deb=$(ls "$cache"/busybox-static_*.deb 2>/dev/null | head -n1 || true)
		fi
		if [[ -n $deb ]]; then
			rm -rf "$cache/busybox-x"
			dpkg-deb -x "$deb" "$cache/busybox-x"
			busybox=$cache/busybox-x/bin/busybox
		else
			say "warning: no static busybox (apt-get download busybox-static failed);" \
				"building without a shell: tasks can only exec /bin/banyand and /bin/sched"
			busybox=none
		fi
	fi
fi
if [[ $busybox != none ]]; then
	[[ -x $busybox ]] || die "busybox $busybox is not executable"
	is_static "$busybox" || die "busybox $busybox is not statically linked"
	cp "$busybox" "$ctx/rootfs/bin/busybox"
	for applet in $("$ctx/rootfs/bin/busybox" --list); do
		[[ $applet == busybox || $applet == sched || $applet == banyand || -e $ctx/rootfs/bin/$applet ]] && continue
		ln -s busybox "$ctx/rootfs/bin/$applet"
	done
fi

# 3. The few files a process expects in /etc. Docker adds hosts,
# resolv.conf and hostname when the container starts.
cat >"$ctx/rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
banyan:x:65532:65532:banyan:/var/lib/banyan:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$ctx/rootfs/etc/group" <<'GROUP'
root:x:0:
banyan:x:65532:
nogroup:x:65534:
GROUP
echo 'hosts: files dns' >"$ctx/rootfs/etc/nsswitch.conf"
cp "$root/deploy/docker/Dockerfile" "$ctx/Dockerfile"

# 4. The image. Without buildx the CLI needs the legacy builder, which is
# all a FROM-scratch build uses anyway.
if ! docker buildx version >/dev/null 2>&1; then
	export DOCKER_BUILDKIT=0
fi
say "docker build -t $image"
docker build --pull=false -q -t "$image" "$ctx" >/dev/null
say "built $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.1f MB", $1/1e6}'))"
