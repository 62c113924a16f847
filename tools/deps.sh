#!/bin/sh
# Installs the Debian packages miffy needs to build, test and run its demo.
# A no-op when every package is present.
set -e
PKGS="gcc make pkg-config libev-dev libcurl4-openssl-dev librdkafka-dev libcjson-dev
libconfuse-dev libmicrohttpd-dev zlib1g-dev libcmocka-dev haproxy python3 python3-pytest
python3-confluent-kafka python3-jsonschema kcat curl clang libclang-rt-14-dev docker-compose systemd"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "make deps: installing$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing
