#!/usr/bin/env bash
# make test-docker: the Dockerfile and docker-compose.yml built and run for
# real, on a machine that reaches no registry.
#   1. Debian's docker engine: started when none answers (dockerd
#      --iptables=false --bridge=none, in the background, logging to
#      $MIFFY_CACHE/dockerd.log); it is left running for the next run.
#   2. The base images, made locally and kept in the engine:
#      debian:bookworm from `debootstrap --variant=minbase bookworm`
#      (tools/base-root.sh), debian:bookworm-slim the same without
#      documentation, man pages and translations, and haproxy:3.0 from
#      trixie's Debian package (the root tools/haproxy-root.sh keeps).
#   3. `docker build` of the Dockerfile (the host's network: no bridge).
#   4. tests/integration/test_docker.py: the image as the agent, then the
#      compose demo (docker-compose.yml + docker-compose.test.yml).
# Needs root. MIFFY_CACHE defaults to /var/cache/miffy.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${MIFFY_CACHE:-/var/cache/miffy}
PYTHON=${PYTHON:-/usr/bin/python3}
[ "$(id -u)" -eq 0 ] || { echo "test-docker: needs root (dockerd, debootstrap)" >&2; exit 2; }
mkdir -p "$CACHE"
t0=$(date +%s)
step() { echo "== test-docker: $* ($(( $(date +%s) - t0 )) s)"; }

# --- 1. the engine -------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
	command -v dockerd >/dev/null || { echo "test-docker: no dockerd: run 'make deps' (docker group)" >&2; exit 2; }
	step "starting dockerd --iptables=false --bridge=none (log $CACHE/dockerd.log)"
	setsid dockerd --iptables=false --bridge=none >>"$CACHE/dockerd.log" 2>&1 </dev/null &
	for ((i = 0; i < 60; i++)); do
		docker info >/dev/null 2>&1 && break
		sleep 0.5
	done
	docker info >/dev/null 2>&1 || { echo "test-docker: dockerd did not answer in 30 s:" >&2; tail -5 "$CACHE/dockerd.log" >&2; exit 1; }
fi
step "engine $(docker version --format '{{.Server.Version}}')"

# --- 2. base images --------------------------------------------------------------
have() { docker image inspect "$1" >/dev/null 2>&1; }
if ! have debian:bookworm || ! have debian:bookworm-slim; then
	tarball=$(sh tools/base-root.sh bookworm)
	step "importing $tarball as debian:bookworm"
	docker import -m "debootstrap --variant=minbase bookworm (tools/base-root.sh)" "$tarball" debian:bookworm >/dev/null
	slim="$CACHE/bookworm-slim.tar"
	if [ ! -s "$slim" ]; then
		cp "$tarball" "$slim.tmp"
		tar --wildcards --delete -f "$slim.tmp" './usr/share/doc/*' './usr/share/man/*' \
			'./usr/share/locale/*' './usr/share/info/*' './var/cache/apt/*.bin' 2>/dev/null || true
		mv "$slim.tmp" "$slim"
	fi
	step "importing $slim as debian:bookworm-slim"
	docker import -m "bookworm minbase without docs, man pages, translations (tools/docker-test.sh)" \
		"$slim" debian:bookworm-slim >/dev/null
fi
if ! have haproxy:3.0; then
	root=$(sh tools/haproxy-root.sh 3.0)
	step "importing $root as haproxy:3.0 (Debian's package)"
	tar -C "$root" --numeric-owner --exclude=./.miffy-ready -c . |
		docker import -m "trixie minbase + Debian's haproxy 3.0 (tools/haproxy-root.sh)" \
			-c 'CMD ["/usr/sbin/haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]' - haproxy:3.0 >/dev/null
fi

# --- 3. the project's image ------------------------------------------------------
step "docker build -t miffy:latest . (log $CACHE/docker-build.log)"
if ! docker build --network host -t miffy:latest . >"$CACHE/docker-build.log" 2>&1; then
	echo "test-docker: docker build failed:" >&2
	tail -20 "$CACHE/docker-build.log" >&2
	exit 1
fi
docker image prune -f >/dev/null 2>&1 || true  # the build stages of earlier runs
step "image miffy:latest: $(docker image inspect miffy:latest --format '{{.Size}}' | awk '{ printf "%.1f MB", $1 / 1e6 }')" \
	"(debian:bookworm-slim: $(docker image inspect debian:bookworm-slim --format '{{.Size}}' | awk '{ printf "%.1f MB", $1 / 1e6 }'))"

# --- 4. run it -------------------------------------------------------------------
step "tests/integration/test_docker.py"
MIFFY_DOCKER=1 MIFFY_BUILD=${MIFFY_BUILD:-$PWD/build} "$PYTHON" -m pytest -q tests/integration/test_docker.py ${PYTEST_ARGS:-}
step "done"
