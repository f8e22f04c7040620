#!/usr/bin/env bash
# End-to-end smoke test of the container deployment: build banyan/sched:dev,
# start deploy/compose (mutual TLS, with certificates made by its tls-init
# service at start; three servers, two agents), wait for a leader and
# both agents, run examples/hello.yaml, stop the leader's container, wait for
# a new leader, run hello again, then tear everything down (volumes too).
#
#   scripts/cluster-smoke.sh
#
# Exits non-zero on any failure, after printing the containers' logs.
# Everything runs under a compose project of its own (banyan-smoke-PID), so
# it touches no other containers, and the servers' host ports are ephemeral
# loopback ports. Environment: BANYAN_SMOKE_SKIP_BUILD=1 reuses an existing
# image; BANYAN_SMOKE_TIMEOUT (seconds, default 90) bounds each wait.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

project=${BANYAN_SMOKE_PROJECT:-banyan-smoke-$$}
timeout_s=${BANYAN_SMOKE_TIMEOUT:-90}
job_file=examples/hello.yaml
servers=(s1 s2 s3)
export BANYAN_IMAGE=${BANYAN_IMAGE:-banyan/sched:dev}
# Empty: compose publishes each server on an ephemeral 127.0.0.1 port.
export BANYAN_S1_PORT='' BANYAN_S2_PORT='' BANYAN_S3_PORT=''

log() { printf '[smoke %3ds] %s\n' "$SECONDS" "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

if docker compose version >/dev/null 2>&1; then
	dc=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
	dc=(docker-compose)
else
	fail "neither 'docker compose' nor docker-compose is installed"
fi
dc+=(-p "$project" -f deploy/compose/docker-compose.yml)
docker info >/dev/null 2>&1 || fail "the Docker daemon is not reachable"

started=0
host_tls=''
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	[[ -n $host_tls ]] && rm -rf "$host_tls"
	if ((started)); then
		if ((rc != 0)); then
			log "container states and logs (last 40 lines each):"
			"${dc[@]}" ps >&2 || true
			"${dc[@]}" logs --no-color --tail 40 >&2 || true
		fi
		log "tearing down project $project"
		"${dc[@]}" down -v --remove-orphans -t 10 >/dev/null 2>&1 ||
			log "warning: '${dc[*]} down -v' failed; remove project $project by hand"
	fi
	if ((rc == 0)); then
		log "PASS in ${SECONDS}s"
	else
		log "FAILED (exit $rc) after ${SECONDS}s"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# sched_in SERVICE ARGS...: run the sched CLI inside SERVICE's container,
# against that server, with the client certificate tls-init made (stdin
# passes through).
tls_dir=/var/lib/banyan/tls
sched_in() {
	local svc=$1
	shift
	"${dc[@]}" exec -T "$svc" sched --addr 127.0.0.1:7400 --tls-ca "$tls_dir/ca.pem" \
		--tls-cert "$tls_dir/client-ops.pem" --tls-key "$tls_dir/client-ops-key.pem" "$@"
}

# leader_seen_by SERVICE: the leader's node id as SERVICE reports it.
leader_seen_by() {
	sched_in "$1" server members </dev/null 2>/dev/null | awk 'NR > 1 && $4 == "true" { print $1 }'
}

# shellcheck source=lib/wait-leader.sh
source "$root/scripts/lib/wait-leader.sh"

# wait_agents SERVICE N: wait until SERVICE lists N agents that are up.
wait_agents() {
	local svc=$1 want=$2 deadline=$((SECONDS + timeout_s)) up
	while ((SECONDS < deadline)); do
		up=$(sched_in "$svc" agent list </dev/null 2>/dev/null | awk 'NR > 1 && $2 == "up"' | wc -l || true)
		((up >= want)) && return 0
		sleep 1
	done
	sched_in "$svc" agent list </dev/null >&2 || true
	fail "fewer than $want agents up (per $svc) within ${timeout_s}s"
}

# run_job SERVICE: submit examples/hello.yaml through SERVICE, wait for it to
# succeed and check a task's output.
run_job() {
	local svc=$1 out id state deadline=$((SECONDS + timeout_s))
	out=$(sched_in "$svc" job submit - <"$job_file") || fail "submit through $svc failed"
	id=$(awk 'NR == 1 { print $1 }' <<<"$out")
	[[ -n $id ]] || fail "submit through $svc printed no job id: $out"
	log "submitted $job_file through $svc: job $id"
	while ((SECONDS < deadline)); do
		out=$(sched_in "$svc" -o json job show "$id" </dev/null 2>/dev/null || true)
		state=$(grep -o '"state": *"[a-z]*"' <<<"$out" | head -n1 | sed 's/.*"\([a-z]*\)"$/\1/' || true)
		case $state in
		succeeded)
			grep -q 'hello from banyan' <<<"$out" || fail "job $id succeeded but its output lacks 'hello from banyan'"
			log "job $id succeeded"
			return 0
			;;
		failed | cancelled)
			sched_in "$svc" job show "$id" </dev/null >&2 || true
			fail "job $id ended $state"
			;;
		esac
		sleep 1
	done
	sched_in "$svc" job show "$id" </dev/null >&2 || true
	fail "job $id did not succeed within ${timeout_s}s (last state: ${state:-unknown})"
}

if [[ ${BANYAN_SMOKE_SKIP_BUILD:-0} != 1 ]]; then
	log "building $BANYAN_IMAGE"
	deploy/docker/build.sh
fi
docker image inspect "$BANYAN_IMAGE" >/dev/null 2>&1 || fail "image $BANYAN_IMAGE is missing"

log "starting project $project (3 servers, 2 agents)"
started=1
"${dc[@]}" up -d --no-build

leader=$(wait_leader '' "${servers[@]}")
log "leader: $leader"
wait_agents "$leader" 2
log "agents a1 and a2 are up"

# The host reaches each server on its published loopback port, with a
# client certificate copied out of the tls volume (into a private temp dir,
# removed at exit), and is refused without one.
if [[ -x bin/docker-context/rootfs/bin/sched ]]; then
	hostport=$("${dc[@]}" port s1 7400 | tail -n1)
	[[ $hostport == 127.0.0.1:* ]] || fail "s1 is published on '$hostport', not on loopback"
	host_tls=$(mktemp -d)
	for f in ca.pem client-ops.pem client-ops-key.pem; do
		(umask 077 && "${dc[@]}" exec -T s1 cat "$tls_dir/$f" >"$host_tls/$f") || fail "copy $f out of s1"
	done
	bin/docker-context/rootfs/bin/sched --addr "$hostport" --tls-ca "$host_tls/ca.pem" \
		--tls-cert "$host_tls/client-ops.pem" --tls-key "$host_tls/client-ops-key.pem" server members >/dev/null ||
		fail "sched server members from the host through $hostport (TLS) failed"
	if bin/docker-context/rootfs/bin/sched --addr "$hostport" server members >/dev/null 2>&1; then
		fail "s1 answered a plaintext client"
	fi
	rm -rf "$host_tls"
	log "host CLI reaches s1 through $hostport with a client certificate, and is refused without one"
fi

# Submit through a follower, so the write is forwarded to the leader.
for svc in "${servers[@]}"; do
	[[ $svc != "$leader" ]] && { follower=$svc; break; }
done
run_job "$follower"

log "stopping the leader's container ($leader)"
"${dc[@]}" stop -t 10 "$leader" >/dev/null 2>&1 || fail "could not stop $leader"
survivors=()
for svc in "${servers[@]}"; do
	[[ $svc != "$leader" ]] && survivors+=("$svc")
done
new_leader=$(wait_leader "$leader" "${survivors[@]}")
log "new leader: $new_leader (after $leader stopped)"
run_job "${survivors[0]}"
wait_agents "$new_leader" 2
log "both agents hold a lease with $new_leader"
