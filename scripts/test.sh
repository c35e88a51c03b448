#!/usr/bin/env bash
# Installs what the tests need and runs every test: go vet, gofmt, the unit,
# integration and end-to-end tests with the race detector (against real
# OpenLDAP slapd and Samba AD DC servers that the tests start on loopback and
# stop), then a short run of every fuzz target.
#
# Run as root on Debian (CI does): missing Debian packages are installed with
# apt-get. FUZZTIME (default 50000x: that many inputs) sets each fuzz
# target's run. A count, not a duration: with a duration, Go 1.26's fuzzing
# coordinator can fail a target with "context deadline exceeded" as the time
# runs out (golang/go#75804), which is no finding.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=()
command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ] || pkgs+=(slapd)
command -v ldapsearch >/dev/null 2>&1 || pkgs+=(ldap-utils)
command -v samba >/dev/null 2>&1 || [ -x /usr/sbin/samba ] || pkgs+=(samba-ad-dc samba-ad-provision)
command -v samba-tool >/dev/null 2>&1 || pkgs+=(samba-ad-provision)
command -v gcc >/dev/null 2>&1 || pkgs+=(gcc)
if [ ${#pkgs[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "test.sh: missing Debian packages (${pkgs[*]}); run as root to install them" >&2
		exit 1
	fi
	echo "test.sh: installing ${pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# Keep package scripts from starting the system's slapd and samba: the
	# tests run their own on free loopback ports.
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
	chmod +x /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
	rm -f /usr/sbin/policy-rc.d
fi

echo "test.sh: go vet"
go vet ./...
echo "test.sh: gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "test.sh: go test -race ./..."
go test -race -count=1 -timeout 30m ./...

fuzztime=${FUZZTIME:-50000x}
echo "test.sh: fuzzing each target for $fuzztime"
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"
	done
done
echo "test.sh: all tests passed"
