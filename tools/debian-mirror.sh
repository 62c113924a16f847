#!/bin/sh
# Prints the Debian mirror of this machine's apt sources (the first URI that
# is not the security archive), for debootstrap (tools/base-root.sh,
# tools/haproxy-root.sh). Exits 2 with a message when there is none.
set -eu
mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
	[ -f "$f" ] || continue
	mirror=$(awk '/^URIs:/ && $2 !~ /security/ { print $2; exit }' "$f")
	[ -n "$mirror" ] && break
done
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
	mirror=$(awk '/^deb / && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list)
fi
[ -n "$mirror" ] || { echo "no Debian mirror in /etc/apt/sources*" >&2; exit 2; }
echo "$mirror"
