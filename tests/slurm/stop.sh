#!/bin/sh
# Stop the Slurm that tests/slurm/start.sh DIR started: cancel the jobs the tests gave it
# (named si-*, by ID, and only once its controller has said it is our cluster), then
# kill the daemons it recorded in DIR/pids (and nothing else).
#   tests/slurm/stop.sh DIR [--jobs-only]    (--jobs-only: cancel, leave the daemons)
dir=$1
export SLURM_CONF="$dir/slurm.conf"
if [ -f "$dir/cluster" ] && [ -f "$SLURM_CONF" ] \
  && [ "$(scontrol show config 2>/dev/null | awk '$1 == "ClusterName" {print $3}')" = "$(cat "$dir/cluster")" ]; then
  ids=$(squeue -h -o '%i %j' 2>/dev/null | awk '$2 ~ /^si-/ {print $1}')
  [ -z "$ids" ] || scancel --quiet $ids 2>/dev/null || true
fi
[ "${2:-}" != --jobs-only ] || exit 0
[ -f "$dir/pids" ] || exit 0
for pid in $(tac "$dir/pids"); do kill "$pid" 2>/dev/null || true; done
for pid in $(cat "$dir/pids"); do
  i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  kill -9 "$pid" 2>/dev/null || true
done
rm -f "$dir/pids"
