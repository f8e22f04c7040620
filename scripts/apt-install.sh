#!/usr/bin/env bash
# Installs Debian packages when running as root; otherwise says what to run.
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing packages: ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing ${missing[*]} with apt-get" >&2
# dpkg's lock may be held by another apt run for a while: retry.
for attempt in 1 2 3 4 5 6; do
  if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; then
    exit 0
  fi
  [ "$attempt" -eq 6 ] && { echo "apt-install: apt-get failed 6 times" >&2; exit 1; }
  echo "apt-install: apt-get failed (dpkg lock busy?); retrying in 20 s" >&2
  sleep 20
done
