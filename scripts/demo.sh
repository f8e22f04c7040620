#!/usr/bin/env bash
# make demo: start a one-process cluster (server and three agents), run a
# thousand-task job through it, show the result, and stop.
set -euo pipefail
cd "$(dirname "$0")/.."
SCHED=bin/sched
ADDR=${DEMO_ADDR:-127.0.0.1:7409}
DATA=$(mktemp -d -t banyan-demo.XXXXXX)
export SCHED_ADDR=$ADDR
$SCHED dev --agents 3 --data-dir "$DATA" --log-level warn &
DEV=$!
trap 'kill $DEV 2>/dev/null; wait $DEV 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do [ "$($SCHED agent list 2>/dev/null | grep -c ' up ')" = 3 ] && break; sleep 0.1; done
$SCHED agent list
id=$($SCHED job submit examples/thousand.yaml -o json | sed -n 's/.*"id": "\(job-[0-9]*\)".*/\1/p' | head -1)
$SCHED job watch "$id"
$SCHED job list
echo "every task's timeline: $SCHED job show $id"
