#!/bin/sh
# Provides a newer Debian HAProxy in a debootstrap root, cached between runs.
#   tools/haproxy-root.sh 3.0     trixie's HAProxy 3.0
#   tools/haproxy-root.sh 3.2     sid's HAProxy 3.2
# Prints the root's path on stdout (progress goes to stderr). Run the
# HAProxy it holds as `chroot ROOT /usr/sbin/haproxy ...`: loopback is
# shared, and config files must be inside ROOT (tests/integration copy them).
# The root lives in $MIFFY_ROOTS (default /var/cache/miffy/roots); a root is
# used only once complete (marked by .miffy-ready), so an interrupted build
# is started again. The pristine root comes from tools/base-root.sh.
set -eu

version=${1:?usage: tools/haproxy-root.sh 3.0|3.2}
case "$version" in
3.0) suite=trixie; extra="" ;;
3.2) suite=sid; extra="-o Acquire::Check-Valid-Until=false" ;;
*) echo "haproxy-root: unknown HAProxy version '$version' (3.0 or 3.2)" >&2; exit 2 ;;
esac

cache=${MIFFY_ROOTS:-/var/cache/miffy/roots}
root="$cache/haproxy-$version"
if [ -f "$root/.miffy-ready" ]; then
	echo "$root"
	exit 0
fi

[ "$(id -u)" -eq 0 ] || { echo "haproxy-root: needs root (debootstrap, chroot)" >&2; exit 2; }

# The suite's pristine minbase root (debootstrap, cached as a tarball by
# tools/base-root.sh), unpacked here, then haproxy installed into it.
tarball=$(sh "$(dirname "$0")/base-root.sh" "$suite")
echo "haproxy-root: building $root (Debian $suite from $tarball)" >&2
rm -rf "$root"
mkdir -p "$root"
tar -C "$root" --numeric-owner -xf "$tarball"
# Nothing the package installs may start a service.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
log="$cache/apt-$version.log"
# shellcheck disable=SC2086 # $extra is a list of apt options
if ! { chroot "$root" apt-get $extra update -qq &&
	DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get $extra install -y -qq --no-install-recommends haproxy; } >"$log" 2>&1; then
	echo "haproxy-root: installing haproxy in $root failed, see $log" >&2
	tail -5 "$log" >&2
	exit 1
fi
chroot "$root" apt-get clean
chroot "$root" /usr/sbin/haproxy -v | head -1 >&2
touch "$root/.miffy-ready"
echo "$root"
