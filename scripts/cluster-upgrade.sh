#!/usr/bin/env bash
# Rolling upgrade of the container deployment, from an old release to this
# working tree, while a job runs:
#
#   scripts/cluster-upgrade.sh            # or: make cluster-upgrade
#
# 1. Build banyan/sched:old from a git ref (default: the commit that added
#    scheduler/server/testdata/fixture-v1, the data dir fixture of the first
#    versioned release), from a `git archive` of it in a temp dir with that
#    release's own deploy/docker/build.sh, and banyan/sched:new from the
#    working tree (stamped with a version, so `server members` tells them
#    apart).
# 2. Start that release's deploy/compose cluster on :old (3 servers, 2
#    agents, mutual TLS), run a few small jobs to the end, then submit a job
#    of long-ish tasks.
# 3. Replace each server container in turn with one on :new, started from
#    this tree's compose file: followers first, the leader last (README,
#    failure classes). Before the next one: a leader is agreed, the new
#    server is a member again and has caught up (it serves every job the
#    leader lists, the running one at least as far along).
# 4. Drain each agent (`sched agent drain`), replace it with one on :new,
#    make it eligible again.
# 5. Check: a `job list` succeeded between every two steps (and a probe
#    from the host, through every server, every second throughout); the
#    long job succeeded with no failed attempt; the jobs from before are
#    still there, succeeded; `server members` shows every server on :new.
#
# Exits non-zero on any failure, after printing the containers' logs. Like
# scripts/cluster-smoke.sh it uses a compose project of its own
# (banyan-upgrade-PID), ephemeral loopback ports, and tears down its
# containers and volumes at exit; nothing is pulled.
#
# Environment:
#   BANYAN_UPGRADE_FROM        git ref of the old release (default above)
#   BANYAN_UPGRADE_SKIP_BUILD  1: reuse existing :old and :new images
#   BANYAN_UPGRADE_TIMEOUT     seconds each wait may take (default 120)
#   BANYAN_UPGRADE_TASKS       tasks in the long job (default 30)
#   BANYAN_UPGRADE_TASK_SECS   seconds each of them runs (default 8)
#   BANYAN_OLD_IMAGE, BANYAN_NEW_IMAGE  tags (banyan/sched:old, :new)
#   BANYAN_UPGRADE_NEW_VERSION the version stamped into :new when it is built
#                              (default: git describe --tags --always --dirty);
#                              the check reads it back from the image
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

project=${BANYAN_UPGRADE_PROJECT:-banyan-upgrade-$$}
timeout_s=${BANYAN_UPGRADE_TIMEOUT:-120}
ntasks=${BANYAN_UPGRADE_TASKS:-30}
task_secs=${BANYAN_UPGRADE_TASK_SECS:-8}
old_image=${BANYAN_OLD_IMAGE:-banyan/sched:old}
new_image=${BANYAN_NEW_IMAGE:-banyan/sched:new}
servers=(s1 s2 s3)
agents=(a1 a2)
# Empty: compose publishes each server on an ephemeral 127.0.0.1 port.
export BANYAN_S1_PORT='' BANYAN_S2_PORT='' BANYAN_S3_PORT=''

log() { printf '[upgrade %3ds] %s\n' "$SECONDS" "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

[[ $ntasks =~ ^[1-9][0-9]*$ ]] || fail "BANYAN_UPGRADE_TASKS=$ntasks: want a positive number"
[[ $task_secs =~ ^[1-9][0-9]*$ ]] || fail "BANYAN_UPGRADE_TASK_SECS=$task_secs: want a positive number"

if docker compose version >/dev/null 2>&1; then
	compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
	compose=(docker-compose)
else
	fail "neither 'docker compose' nor docker-compose is installed"
fi
docker info >/dev/null 2>&1 || fail "the Docker daemon is not reachable"
command -v git >/dev/null 2>&1 || fail "git not found"
command -v jq >/dev/null 2>&1 || fail "jq not found (it reads job show -o json)"

from=${BANYAN_UPGRADE_FROM:-$(git log --diff-filter=A --format=%H -1 -- scheduler/server/testdata/fixture-v1)}
[[ -n $from ]] || fail "no commit added scheduler/server/testdata/fixture-v1; set BANYAN_UPGRADE_FROM"
old_commit=$(git rev-parse --verify --quiet "$from^{commit}") || fail "BANYAN_UPGRADE_FROM=$from is not a commit"
stamp=${BANYAN_UPGRADE_NEW_VERSION:-$(git describe --tags --always --dirty)}
[[ $stamp =~ ^[A-Za-z0-9._+-]+$ ]] || fail "version '$stamp': letters, digits and ._+- only"

tmp=$(mktemp -d)
started=0
prober=''
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n $prober ]]; then
		kill "$prober" 2>/dev/null || true
		wait "$prober" 2>/dev/null || true
	fi
	if ((started)); then
		if ((rc != 0)); then
			log "container states and logs (last 60 lines each):"
			dc_new ps >&2 || true
			dc_new logs --no-color --tail 60 >&2 || true
		fi
		log "tearing down project $project"
		dc_new down -v --remove-orphans -t 10 >/dev/null 2>&1 ||
			log "warning: '${compose[*]} -p $project down -v' failed; remove project $project by hand"
	fi
	rm -rf "$tmp"
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

old_src=$tmp/old-src
mkdir -p "$old_src"
git archive "$old_commit" | tar -x -C "$old_src"
old_compose=$old_src/deploy/compose/docker-compose.yml
[[ -f $old_compose ]] || fail "release $old_commit has no deploy/compose/docker-compose.yml"

# dc_old / dc_new ARGS...: compose for this project with the old release's
# compose file on :old, or this tree's on :new. Both name the same services,
# network and volumes, so a service started by one is replaced by the other.
dc_old() { BANYAN_IMAGE=$old_image "${compose[@]}" -p "$project" -f "$old_compose" "$@"; }
dc_new() { BANYAN_IMAGE=$new_image "${compose[@]}" -p "$project" -f deploy/compose/docker-compose.yml "$@"; }

if [[ ${BANYAN_UPGRADE_SKIP_BUILD:-0} != 1 ]]; then
	log "building $new_image (version $stamp) from the working tree"
	BANYAN_IMAGE=$new_image BANYAN_VERSION=$stamp deploy/docker/build.sh
	# The old release's build.sh, on its own sources; the busybox the new
	# build found is reused (no second download).
	busybox=$root/bin/docker-cache/busybox-x/bin/busybox
	[[ -x $busybox ]] || busybox=''
	log "building $old_image from release ${old_commit:0:12} (git archive in a temp dir)"
	(cd "$old_src" && BANYAN_IMAGE=$old_image BANYAN_CONTEXT=$tmp/old-context BANYAN_BUSYBOX=$busybox \
		deploy/docker/build.sh)
fi
for image in "$old_image" "$new_image"; do
	docker image inspect "$image" >/dev/null 2>&1 || fail "image $image is missing"
done

# The host CLI is this tree's sched, copied out of :new (static), with the
# sched-client it execs beside it.
cli=$tmp/sched
cid=$(docker create "$new_image")
docker cp "$cid:/bin/sched" "$cli" >/dev/null
docker cp "$cid:/bin/sched-client" "$tmp/sched-client" >/dev/null
docker rm "$cid" >/dev/null
# What every server must report at the end: the version in :new.
new_version=$("$cli" version | awk 'NR == 1 { print $2 }')
[[ -n $new_version ]] || fail "$new_image: sched version printed no version"
log "$new_image is sched $new_version"
tls=$tmp/tls

# port_of SERVICE: SERVICE's published loopback address (it changes when
# the container is replaced); empty while it is not running. (docker, not
# compose: it is asked every second.)
port_of() {
	local id
	id=$(docker ps -q --filter "label=com.docker.compose.project=$project" \
		--filter "label=com.docker.compose.service=$1" | head -n1)
	[[ -n $id ]] && docker port "$id" 7400/tcp 2>/dev/null | grep '^127\.0\.0\.1:' | head -n1
}

# at ADDRS ARGS...: run the host CLI against ADDRS (one server, or a comma
# list it fails over along) with the ops client certificate.
at() {
	local addrs=$1
	shift
	"$cli" --addr "$addrs" --tls-ca "$tls/ca.pem" --tls-cert "$tls/client-ops.pem" \
		--tls-key "$tls/client-ops-key.pem" "$@"
}
# on SERVICE ARGS...: the host CLI against SERVICE alone.
on() {
	local addr
	addr=$(port_of "$1") || return 1
	[[ -n $addr ]] || return 1
	shift
	at "$addr" "$@"
}
# all_addrs: the addresses of the servers running now, comma-separated.
all_addrs() {
	local svc addr out=()
	for svc in "${servers[@]}"; do
		addr=$(port_of "$svc" || true)
		[[ -n $addr ]] && out+=("$addr")
	done
	(IFS=,; echo "${out[*]}")
}

# leader_seen_by SERVICE: the leader's node id as SERVICE reports it.
leader_seen_by() { on "$1" server members 2>/dev/null | awk 'NR > 1 && $4 == "true" { print $1 }'; }

# shellcheck source=lib/wait-leader.sh
source "$root/scripts/lib/wait-leader.sh"

# agent_cell SERVICE AGENT: AGENT's STATE cell in `agent list` (up, down,
# "up, draining", "up, drained", "up, ineligible").
agent_cell() {
	on "$1" agent list 2>/dev/null | awk -v a="$2" '
		NR == 1 { n = index($0, "STATE"); m = index($0, "GPUS") }
		NR > 1 && $1 == a { s = substr($0, n, m - n); sub(/ +$/, "", s); print s }'
}

# wait_agent SERVICE AGENT PATTERN: wait until AGENT's state matches PATTERN.
wait_agent() {
	local svc=$1 agent=$2 pat=$3 deadline=$((SECONDS + timeout_s)) cell=''
	while ((SECONDS < deadline)); do
		cell=$(agent_cell "$svc" "$agent" || true)
		[[ $cell =~ $pat ]] && return 0
		sleep 1
	done
	on "$svc" agent list >&2 || true
	fail "agent $agent is '$cell', not /$pat/, within ${timeout_s}s"
}

# on_version SERVICE: whether the members table on stdin shows SERVICE on
# the version of :new.
on_version() { awk -v s="$1" -v v="$new_version (" 'NR > 1 && $1 == s && index($0, v) { f = 1 } END { exit !f }'; }

# job_row SERVICE ID: "STATE TASKS DONE" of job ID as SERVICE's own copy of
# the state has it (job list is served locally).
job_row() { on "$1" job list 2>/dev/null | awk -v id="$2" 'NR > 1 && $1 == id { print $6, $7, $8 }'; }

# job_ids SERVICE: the ids SERVICE lists, sorted.
job_ids() { on "$1" job list | awk 'NR > 1 { print $1 }' | sort; }

# serving STEP: a job list through the whole cluster (the CLI fails over
# between servers) must succeed now.
serving() {
	at "$(all_addrs)" job list >/dev/null 2>"$tmp/serving.err" ||
		fail "job list failed $1: $(cat "$tmp/serving.err")"
	log "job list answered $1"
}

# run_small: submit examples/hello.yaml and wait for it to succeed; print
# its id.
run_small() {
	local out id row deadline=$((SECONDS + timeout_s))
	out=$(at "$(all_addrs)" job submit - <examples/hello.yaml) || fail "submit hello failed"
	id=$(awk 'NR == 1 { print $1 }' <<<"$out")
	[[ -n $id ]] || fail "submit printed no job id: $out"
	while ((SECONDS < deadline)); do
		row=$(job_row s1 "$id" || true)
		case ${row%% *} in
		succeeded) echo "$id"; return 0 ;;
		failed | cancelled) at "$(all_addrs)" job show "$id" >&2 || true; fail "job $id ended ${row%% *}" ;;
		esac
		sleep 1
	done
	fail "job $id did not succeed within ${timeout_s}s"
}

# wait_caught_up SERVICE LEADER: SERVICE (just restarted) is a member again
# and its copy of the state has every job LEADER lists, the long job at
# least as far along as LEADER had it when we asked.
wait_caught_up() {
	local svc=$1 leader=$2 deadline=$((SECONDS + timeout_s)) want have lrow row
	want=$(job_ids "$leader") || fail "job list through the leader $leader failed"
	lrow=$(job_row "$leader" "$long")
	while ((SECONDS < deadline)); do
		if on "$leader" server members 2>/dev/null | awk -v s="$svc" 'NR > 1 && $1 == s && $3 == "voter"' | grep -q .; then
			have=$(job_ids "$svc" 2>/dev/null || true)
			row=$(job_row "$svc" "$long" || true)
			if [[ $have == "$want" && -n $row ]] && (($(awk '{print $3}' <<<"$row") >= $(awk '{print $3}' <<<"$lrow"))); then
				log "$svc caught up: $(wc -l <<<"$want") jobs, long job $long '$row' (leader had '$lrow')"
				return 0
			fi
		fi
		sleep 1
	done
	fail "$svc did not rejoin and catch up with $leader within ${timeout_s}s (it lists: ${have:-nothing})"
}

log "starting project $project on $old_image (release ${old_commit:0:12}: 3 servers, 2 agents)"
started=1
dc_old up -d --no-build >/dev/null 2>&1 || { dc_old up -d --no-build; fail "compose up on $old_image failed"; }

# The ops client certificate tls-init made, for the host CLI.
mkdir -p "$tls" && chmod 700 "$tls"
deadline=$((SECONDS + timeout_s))
until dc_new exec -T s1 test -f /var/lib/banyan/tls/client-ops-key.pem 2>/dev/null; do
	((SECONDS < deadline)) || fail "tls-init made no certificates within ${timeout_s}s"
	sleep 1
done
for f in ca.pem client-ops.pem client-ops-key.pem; do
	(umask 077 && dc_new exec -T s1 cat "/var/lib/banyan/tls/$f" >"$tls/$f") || fail "copy $f out of s1"
done

leader=$(wait_leader '' "${servers[@]}")
log "leader: $leader"
for a in "${agents[@]}"; do
	wait_agent "$leader" "$a" '^up$'
done
members=$(on "$leader" server members) || fail "server members failed"
log "agents up; members on the old release:"
echo "$members" >&2
for svc in "${servers[@]}"; do
	! on_version "$svc" <<<"$members" || fail "$svc on $old_image already reports $new_version: nothing to upgrade"
done

old_jobs=()
for i in 1 2 3; do
	old_jobs+=("$(run_small)")
done
log "finished jobs before the upgrade: ${old_jobs[*]}"

# The long job: tasks of one cpu each, so each agent runs one at a time.
{
	echo "name: upgrade-long"
	echo "tasks:"
	for ((i = 1; i <= ntasks; i++)); do
		echo "  - name: t$i"
		echo "    command: [sleep, \"$task_secs\"]"
		echo "    resources: {cpu: 1, memory: 32Mi}"
		echo "    retry: {max_attempts: 1}"
	done
} >"$tmp/long.yaml"
long=$(at "$(all_addrs)" job submit - <"$tmp/long.yaml" | awk 'NR == 1 { print $1 }')
[[ -n $long ]] || fail "submitting the long job printed no id"
log "long job $long: $ntasks tasks of ${task_secs}s"

# Probe from the host every second, through every server, until the end.
probe_log=$tmp/probe.log
: >"$probe_log"
(
	while :; do
		if err=$(at "$(all_addrs)" job list 2>&1 >/dev/null); then
			echo ok >>"$probe_log"
		else
			echo "fail at ${SECONDS}s: $err" >>"$probe_log"
		fi
		sleep 1
	done
) &
prober=$!

serving "before the upgrade"
upgraded=()
for ((n = 0; n < ${#servers[@]}; n++)); do
	leader=$(wait_leader '' "${servers[@]}")
	# The next server: a follower still on :old, else the leader.
	next=''
	for svc in "${servers[@]}"; do
		[[ " ${upgraded[*]} " == *" $svc "* ]] && continue
		if [[ $svc != "$leader" ]]; then
			next=$svc
			break
		fi
		next=${next:-$svc}
	done
	others=()
	for svc in "${servers[@]}"; do
		[[ $svc != "$next" ]] && others+=("$svc")
	done
	log "replacing $next (leader: $leader; long job: $(job_row "${others[0]}" "$long"))"
	dc_new stop -t 15 "$next" >/dev/null 2>&1 || fail "could not stop $next"
	survivor_leader=$(wait_leader "$next" "${others[@]}")
	serving "with $next stopped (leader $survivor_leader)"
	dc_new up -d --no-deps --no-build "$next" >/dev/null 2>&1 || fail "could not start $next on $new_image"
	leader=$(wait_leader '' "${servers[@]}")
	wait_caught_up "$next" "$leader"
	upgraded+=("$next")
	serving "after $next moved to $new_image"
done

for a in "${agents[@]}"; do
	leader=$(wait_leader '' "${servers[@]}")
	log "draining $a (long job: $(job_row "$leader" "$long"))"
	at "$(all_addrs)" agent drain "$a" >&2 || fail "drain $a failed"
	wait_agent "$leader" "$a" 'drained'
	serving "with $a drained"
	dc_new up -d --no-deps --no-build "$a" >/dev/null 2>&1 || fail "could not start $a on $new_image"
	# The replaced agent registers again, still cordoned until told.
	wait_agent "$leader" "$a" '^up'
	at "$(all_addrs)" agent eligibility "$a" on >&2 || fail "eligibility $a on failed"
	wait_agent "$leader" "$a" '^up$'
	serving "after $a moved to $new_image"
done

leader=$(wait_leader '' "${servers[@]}")
deadline=$((SECONDS + timeout_s + ntasks * task_secs))
while :; do
	row=$(job_row "$leader" "$long" || true)
	case ${row%% *} in
	succeeded) break ;;
	failed | cancelled) at "$(all_addrs)" job show "$long" >&2 || true; fail "long job $long ended ${row%% *}" ;;
	esac
	((SECONDS < deadline)) || fail "long job $long did not end (last: '$row')"
	sleep 2
done
show=$(at "$(all_addrs)" -o json job show "$long") || fail "job show $long failed"
failed_attempts=$(jq '[.tasks[].attempts[]? | select(.outcome == "failed")] | length' <<<"$show")
total=$(jq '.counts.total' <<<"$show")
succeeded=$(jq '[.tasks[] | select(.state == "succeeded")] | length' <<<"$show")
lost=$(jq '[.tasks[].attempts[]? | select(.outcome != "succeeded")] | length' <<<"$show")
((failed_attempts == 0)) || { at "$(all_addrs)" job show "$long" >&2; fail "long job $long had $failed_attempts failed attempts"; }
((total == ntasks && succeeded == ntasks)) || fail "long job $long: $succeeded of $total tasks succeeded, want $ntasks"
log "long job $long succeeded: $succeeded/$ntasks tasks, no failed attempt ($lost attempts ended otherwise, e.g. lost)"

for id in "${old_jobs[@]}"; do
	for svc in "${servers[@]}"; do
		row=$(job_row "$svc" "$id")
		[[ ${row%% *} == succeeded ]] || fail "job $id from before the upgrade is '$row' on $svc"
	done
done
log "jobs from before the upgrade are there on every server: ${old_jobs[*]}"

members=$(at "$(all_addrs)" server members) || fail "server members failed"
echo "$members" >&2
for svc in "${servers[@]}"; do
	on_version "$svc" <<<"$members" || fail "server members does not show $svc on version $new_version"
done
log "every server reports version $new_version"

kill "$prober" 2>/dev/null || true
wait "$prober" 2>/dev/null || true
prober=''
oks=$(grep -c '^ok$' "$probe_log" || true)
fails=$(grep -c '^fail' "$probe_log" || true)
log "host probe (job list through every server, each second): $oks answered, $fails failed"
if ((fails > 0)); then
	grep '^fail' "$probe_log" >&2
	fail "the cluster did not answer $fails of $((oks + fails)) job lists during the upgrade"
fi
