#!/usr/bin/env bash
# make demo: generate a 1080p clip of about 30 s with audio, start a
# one-process cluster (server and agents), encode the clip with a
# three-rung ladder, and print the wall time, per-stage timing, where the
# output is and the verification result.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/apt-install.sh ffmpeg
SCHED=$PWD/bin/sched
ADDR=${DEMO_ADDR:-127.0.0.1:7409}
OUT=${DEMO_OUT:-$PWD/demo-out}
DURATION=${DEMO_DURATION:-30}
AGENTS=${DEMO_AGENTS:-2}
export SCHED_ADDR=$ADDR
mkdir -p "$OUT"
rm -rf "$OUT/data" "$OUT/encoded"
CLIP=$OUT/clip-1080p.mp4
if [ ! -s "$CLIP" ]; then
  echo "generating a ${DURATION}s 1080p clip with audio: $CLIP"
  ffmpeg -hide_banner -v error -y \
    -f lavfi -i "testsrc2=size=1920x1080:rate=30,drawtext=text='banyan %{n}':x=40:y=40:fontsize=48:fontcolor=white" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000" -t "$DURATION" \
    -c:v libx264 -preset ultrafast -g 60 -pix_fmt yuv420p -c:a aac -b:a 128k "$CLIP" 2>/dev/null ||
  ffmpeg -hide_banner -v error -y \
    -f lavfi -i "testsrc2=size=1920x1080:rate=30" -f lavfi -i "sine=frequency=440:sample_rate=48000" -t "$DURATION" \
    -c:v libx264 -preset ultrafast -g 60 -pix_fmt yuv420p -c:a aac -b:a 128k "$CLIP"
fi
$SCHED dev --agents "$AGENTS" --data-dir "$OUT/data" --storage-root "$OUT" --log-level warn &
DEV=$!
trap 'kill $DEV 2>/dev/null; wait $DEV 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ "$($SCHED agent list 2>/dev/null | grep -c ' up ')" = "$AGENTS" ] && break; sleep 0.1; done
$SCHED agent list
echo
echo "encoding with the demo ladder (720p, 480p, 360p; NVENC preferred, CPU fallback):"
$SCHED encode "$CLIP" --ladder demo --out "$OUT/encoded" --chunk 10s
echo
echo "output: $OUT/encoded/clip-1080p (renditions, HLS under hls/, verify.json)"
