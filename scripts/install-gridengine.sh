#!/usr/bin/env bash
# Installs the second peer of `make bench-peers`: Debian's Grid Engine (Son
# of Grid Engine: gridengine-master, -exec and -client), via apt-get when
# running as root, else says what to run. It installs only; the benchmark
# sets up a private cell of its own (own SGE_ROOT, spool, ports, in a
# network namespace of its own) and starts and stops its daemons itself.
# The package's own cell is never configured or started by it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
"$here/apt-install.sh" gridengine-master gridengine-exec gridengine-client
for p in /var/lib/gridengine/util/arch /usr/lib/gridengine/sge_qmaster /usr/lib/gridengine/sge_execd /usr/lib/gridengine/qsub; do
  [ -x "$p" ] || { echo "install-gridengine: $p not found after installing gridengine-*" >&2; exit 1; }
done
