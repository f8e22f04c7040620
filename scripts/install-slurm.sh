#!/usr/bin/env bash
# Installs what `make bench-peers` needs: Debian's Slurm (slurm-wlm:
# slurmctld, slurmd and the client commands) and munge, via apt-get when
# running as root, else says what to run. It installs only; the benchmark
# starts its own private munged, slurmctld and slurmd (own config, state,
# ports and munge key under a temp dir) and never touches a system-wide
# Slurm or munge.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
"$here/apt-install.sh" slurm-wlm munge
for p in munged slurmctld slurmd sbatch squeue scancel sinfo; do
  command -v "$p" >/dev/null 2>&1 || { echo "install-slurm: $p not found after installing slurm-wlm and munge" >&2; exit 1; }
done
if [ "$(id -u)" -ne 0 ]; then
  echo "install-slurm: Slurm is installed, but the benchmark must run as root (its slurmd runs as root, without cgroups)" >&2
  exit 1
fi
