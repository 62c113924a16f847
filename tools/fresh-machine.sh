#!/usr/bin/env bash
# make test-fresh: the README's commands on a fresh Debian 12, as a new user
# runs them. A clean root is made from the pristine bookworm minbase
# tarball (tools/base-root.sh), given only what the README assumes a new
# user has (gcc make git python3), the repository is cloned into it (its
# committed HEAD) and, inside it:
#   make            must stop at once with the one line that says to run
#                   'make deps' (no library is there yet)
#   DEMO_SECONDS=8 make demo
#                   must work in one run and print what the README says it
#                   prints (the sample traffic, differences read back from
#                   Kafka, the outcome counters, "stopped cleanly")
#   make test       too, when FRESH_STEPS has "test" (FRESH_STEPS="demo
#                   test"; about 10 more minutes)
# The root with the user's four packages is cached too
# ($MIFFY_CACHE/bookworm-newuser.tar), so a run costs the clone and the
# steps. Mounts /proc and /dev (bind) into the root and undoes them, and
# removes the root, on exit (its logs, $ROOT.log and $ROOT.test.log beside
# it, are kept when a step failed). The root shares the host's network: the demo's
# ports (8080-8083, 9000, 12345) must be free. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${MIFFY_CACHE:-/var/cache/miffy}
STEPS=${FRESH_STEPS:-demo}
[ "$(id -u)" -eq 0 ] || { echo "test-fresh: needs root (debootstrap, chroot, mount)" >&2; exit 2; }
t0=$(date +%s)
step() { echo "== test-fresh: $* ($(( $(date +%s) - t0 )) s)"; }

ROOT=$(mktemp -d /var/tmp/miffy-fresh.XXXXXX)
LOG="$ROOT.log"
cleanup() {
	local m
	for m in proc dev/pts dev; do
		mountpoint -q "$ROOT/$m" 2>/dev/null && umount -l "$ROOT/$m"
	done
	rm -rf --one-file-system "$ROOT"
}
trap cleanup EXIT

mount_root() {
	mount -t proc proc "$ROOT/proc"
	mount --bind /dev "$ROOT/dev"
	mount --bind /dev/pts "$ROOT/dev/pts"
	cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
}
in_root() { chroot "$ROOT" /usr/bin/env -i HOME=/root DEBIAN_FRONTEND=noninteractive PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	LANG=C.UTF-8 TERM=dumb "$@"; }

newuser="$CACHE/bookworm-newuser.tar"
if [ -s "$newuser" ]; then
	step "unpacking $newuser"
	tar -C "$ROOT" -xf "$newuser"
	mount_root
else
	tarball=$(sh tools/base-root.sh bookworm)
	step "unpacking $tarball"
	tar -C "$ROOT" -xf "$tarball"
	mount_root
	# Nothing a package installs may start a service.
	printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
	chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
	step "installing what a new user has: gcc make git python3 (log $LOG)"
	if ! { in_root apt-get update -qq && in_root apt-get install -y -qq \
		--no-install-recommends gcc make git python3; } >"$LOG" 2>&1; then
		echo "test-fresh: installing the new user's packages failed, see $LOG" >&2
		tail -5 "$LOG" >&2
		exit 1
	fi
	in_root apt-get clean
	tar -C "$ROOT" --numeric-owner --exclude=./proc/* --exclude=./dev/* -cf "$newuser.tmp" .
	mv "$newuser.tmp" "$newuser"
fi

step "git clone $(git rev-parse --short HEAD) into the root"
git clone -q "$PWD" "$ROOT/root/miffy"

fail() { echo "test-fresh: $*" >&2; exit 1; }

step "make (no library installed yet)"
set +e
out=$(in_root sh -c 'cd /root/miffy && make' 2>&1)
rc=$?
set -e
printf '%s\n' "$out" | sed 's/^/    /'
[ "$rc" -ne 0 ] || fail "make succeeded without the libraries?"
printf '%s\n' "$out" | grep -q "run 'make deps'" || fail "make did not say to run 'make deps'"
[ "$(printf '%s\n' "$out" | grep -c '^miffy: ')" -eq 1 ] || fail "make printed more than one line of its own"

if [[ " $STEPS " == *" demo "* ]]; then
	step "DEMO_SECONDS=8 make demo"
	set +e
	out=$(in_root sh -c 'cd /root/miffy && DEMO_SECONDS=8 make demo' 2>&1)
	rc=$?
	set -e
	printf '%s\n' "$out" | grep -v '^cc \|^  -MT \|^ar ' | sed 's/^/    /'
	[ "$rc" -eq 0 ] || fail "make demo exited with $rc"
	for want in "^make deps: build: installing" "GET /api/changed +-> 200" \
		"differences published to Kafka topic miffy" "/api/changed +different +/length value: 7 -> 8" \
		"noise \(the secondary differs there too\)" "miffy's outcome counters" \
		"^ +equal 0, different [1-9][0-9]*, noise [1-9]" "stopped cleanly"; do
		printf '%s\n' "$out" | grep -Eq -- "$want" || fail "make demo's output lacks /$want/"
	done
	for unwanted in "make deps: test" "make deps: docker" "make deps: browser" "rm build/obj"; do
		printf '%s\n' "$out" | grep -qF -- "$unwanted" && fail "make demo's output has '$unwanted'"
	done
fi

if [[ " $STEPS " == *" test "* ]]; then
	step "make test"
	in_root sh -c 'cd /root/miffy && make test' >"$ROOT.test.log" 2>&1 || { tail -30 "$ROOT.test.log"; fail "make test failed (log $ROOT.test.log)"; }
	tail -3 "$ROOT.test.log"
fi
rm -f "$LOG" "$ROOT.test.log"
step "passed: $STEPS"
