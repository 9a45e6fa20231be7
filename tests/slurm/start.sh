#!/bin/sh
# Start a real single-node Slurm for the tests (as root), with all its state under DIR:
#   tests/slurm/start.sh DIR
# Writes DIR/slurm.conf (use it with SLURM_CONF=DIR/slurm.conf) and DIR/pids (the
# daemons this script started, for tests/slurm/stop.sh). Needs the Debian packages
# slurmctld, slurmd, slurm-client and munge. Exits 0 once `sinfo` shows the node idle.
set -eu
dir=$1
mkdir -p "$dir/state" "$dir/spool"
: > "$dir/pids"
host=$(hostname -s)
cpus=8   # more than this machine may have (config_overrides): max_jobs must be what limits

# munge: a key (1024 random bytes, munge:munge 0400) and munged as user munge, unless
# one already answers.
if ! munge -n >/dev/null 2>&1; then
  if [ ! -s /etc/munge/munge.key ] || [ "$(stat -c %s /etc/munge/munge.key)" -lt 1024 ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge
  runuser -u munge -- munged -F >"$dir/munged.out" 2>&1 &
  echo $! >> "$dir/pids"
  i=0
  until munge -n >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "munged did not start" >&2; cat "$dir/munged.out" >&2; exit 1; }
    sleep 0.1
  done
fi

cat > "$dir/slurm.conf" <<CONF
ClusterName=sitest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=300
KillWait=2
MpiDefault=none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$dir/slurm.conf"
slurmctld -D -i >"$dir/slurmctld.out" 2>&1 &
echo $! >> "$dir/pids"
slurmd -D >"$dir/slurmd.out" 2>&1 &
echo $! >> "$dir/pids"
i=0
until sinfo -h -p debug -o %T 2>/dev/null | grep -qx idle; do
  i=$((i + 1))
  if [ $i -ge 300 ]; then
    echo "the Slurm node did not become idle within 30 s:" >&2
    sinfo -p debug >&2 || true
    tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
    exit 1
  fi
  sleep 0.1
done
