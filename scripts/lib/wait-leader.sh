# Shared by scripts/cluster-smoke.sh and scripts/cluster-upgrade.sh; sourced,
# not run. The sourcing script defines leader_seen_by SERVICE (the leader
# that server names, empty when it names none), fail MESSAGE, and
# timeout_s.

# wait_leader EXCLUDED SERVICE...: wait until every listed server names the
# same leader, which is not EXCLUDED; print it.
wait_leader() {
	local excluded=$1 deadline=$((SECONDS + timeout_s)) svc seen leader
	shift
	while ((SECONDS < deadline)); do
		leader=''
		for svc in "$@"; do
			seen=$(leader_seen_by "$svc" || true)
			if [[ -z $seen || $seen == "$excluded" || (-n $leader && $seen != "$leader") ]]; then
				leader=''
				break
			fi
			leader=$seen
		done
		if [[ -n $leader ]]; then
			echo "$leader"
			return 0
		fi
		sleep 1
	done
	fail "no agreed leader (other than '${excluded:-none}') among $* within ${timeout_s}s"
}
