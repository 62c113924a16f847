#!/bin/sh
# Provides a pristine Debian root as a tarball, made once with debootstrap
# (--variant=minbase) and cached between runs:
#   tools/base-root.sh bookworm       prints the tarball's path on stdout
# The tarball lives in $MIFFY_CACHE (default /var/cache/miffy), named
# SUITE-minbase.tar; it is written under a temporary name and renamed when
# complete, so an interrupted build starts again. The fresh-machine check
# (tools/fresh-machine.sh) unpacks it; the docker test (tools/docker-test.sh)
# imports it as the Dockerfile's base images; tools/haproxy-root.sh unpacks
# trixie's and sid's to install HAProxy 3.0 and 3.2 in them. The mirror is the one in this
# machine's apt sources. Progress goes to stderr.
set -eu

suite=${1:?usage: tools/base-root.sh SUITE (bookworm, trixie, sid)}
cache=${MIFFY_CACHE:-/var/cache/miffy}
tarball="$cache/$suite-minbase.tar"
if [ -s "$tarball" ]; then
	echo "$tarball"
	exit 0
fi

[ "$(id -u)" -eq 0 ] || { echo "base-root: needs root (debootstrap)" >&2; exit 2; }

mirror=$(sh "$(dirname "$0")/debian-mirror.sh")

if ! command -v debootstrap >/dev/null 2>&1; then
	echo "base-root: installing debootstrap" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >&2
fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/.$suite-root.XXXXXX")
trap 'rm -rf "$work"' EXIT
log="$cache/debootstrap-$suite.log"
echo "base-root: debootstrap --variant=minbase $suite from $mirror (log $log)" >&2
debootstrap --variant=minbase "$suite" "$work/root" "$mirror" >"$log" 2>&1 || {
	echo "base-root: debootstrap failed, see $log" >&2
	tail -5 "$log" >&2
	exit 1
}
rm -rf "$work/root/var/cache/apt/archives"/*.deb "$work/root/var/lib/apt/lists"/*_Packages 2>/dev/null || true
tar -C "$work/root" --numeric-owner -cf "$work/root.tar" .
mv "$work/root.tar" "$tarball"
echo "$tarball"
