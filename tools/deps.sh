#!/bin/sh
# Installs the Debian packages miffy needs, by group, one line per group:
#   tools/deps.sh [GROUP...]      default: every group
#   build    what `make` and `make demo` need: compiler, pkg-config, the -dev
#            packages of the libraries, haproxy, curl, kcat and python3 (the
#            demo's summary)
#   test     what `make test` adds: cmocka, pytest, confluent-kafka (the test
#            consumer), jsonschema, yaml, clang (fuzzing), systemd
#            (systemd-analyze checks the unit), docker-compose (validates the
#            compose file)
#   browser  chromium, chromium-driver, selenium (the dashboard's tests)
#   docker   Debian's docker engine, docker-compose and debootstrap
#            (make test-docker, make test-fresh)
# A group whose packages are all present prints "ok" and runs no apt-get.
# apt's output goes to $DEPS_LOG (default /tmp/miffy-deps.log), shown only
# when it fails.
set -e

group_pkgs() {
	case $1 in
	build) echo "gcc make pkg-config libev-dev libcurl4-openssl-dev librdkafka-dev libcjson-dev
		libconfuse-dev libmicrohttpd-dev zlib1g-dev haproxy curl kcat python3" ;;
	test) echo "libcmocka-dev python3-pytest python3-confluent-kafka python3-jsonschema
		python3-yaml clang libclang-rt-14-dev systemd docker-compose" ;;
	browser) echo "chromium chromium-driver python3-selenium" ;;
	docker) echo "docker.io docker-compose debootstrap" ;;
	*) return 1 ;;
	esac
}

[ $# -gt 0 ] || set -- build test browser docker
for g in "$@"; do
	group_pkgs "$g" >/dev/null || { echo "make deps: unknown group '$g' (build, test, browser, docker)" >&2; exit 2; }
done

LOG=${DEPS_LOG:-/tmp/miffy-deps.log}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
updated=""
for g in "$@"; do
	missing=""
	for p in $(group_pkgs "$g"); do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
	done
	if [ -z "$missing" ]; then
		echo "make deps: $g: ok"
		continue
	fi
	echo "make deps: $g: installing$missing"
	# The lists are refreshed once per run, before the first install.
	if [ -z "$updated" ]; then
		$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq >>"$LOG" 2>&1 || {
			echo "make deps: apt-get update failed, see $LOG" >&2; tail -5 "$LOG" >&2; exit 1; }
		updated=1
	fi
	# shellcheck disable=SC2086 # $missing is a list of packages
	$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing >>"$LOG" 2>&1 || {
		echo "make deps: installing the $g group failed, see $LOG" >&2; tail -5 "$LOG" >&2; exit 1; }
done
