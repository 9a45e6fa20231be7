#!/bin/sh
# Stop the Slurm that tests/slurm/start.sh DIR started: cancel its jobs, then kill the
# daemons it recorded in DIR/pids (and nothing else).
dir=$1
SLURM_CONF="$dir/slurm.conf" scancel --full --quiet --user=root 2>/dev/null || true
[ -f "$dir/pids" ] || exit 0
for pid in $(tac "$dir/pids"); do kill "$pid" 2>/dev/null || true; done
for pid in $(cat "$dir/pids"); do
  i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  kill -9 "$pid" 2>/dev/null || true
done
rm -f "$dir/pids"
