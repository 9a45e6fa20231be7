#!/bin/sh
# Start a real single-node Slurm for the tests (as root), with all its state under DIR:
#   tests/slurm/start.sh DIR
# Everything is its own, so that the tests never talk to another Slurm that may run on
# this machine: a cluster name made for this run, free ports (never the default 6817 and
# 6818), its own munged on its own socket and key, and DIR/slurm.conf (use it with
# SLURM_CONF=DIR/slurm.conf). DIR/pids lists the daemons it started (for stop.sh),
# DIR/cluster the cluster name, DIR/munge.socket munged's socket.
#
# Exits 0 once its own controller answers by its own cluster name and the node is idle;
# exits 2, with the reason on stderr, when it cannot start one (the tests then skip);
# anything else is a bug here.
set -eu
dir=$1
mkdir -p "$dir/state" "$dir/spool" "$dir/munge" "$dir/munge-run"
: > "$dir/pids"
host=$(hostname -s)
cpus=8   # more than this machine may have (config_overrides): max_jobs must be what limits
cluster="sitest$$"
echo "$cluster" > "$dir/cluster"

cannot() {
  echo "cannot start a Slurm of the tests' own: $*" >&2
  exit 2
}

for b in munged munge slurmctld slurmd sinfo scontrol ss; do
  command -v "$b" >/dev/null 2>&1 || cannot "$b is not installed"
done

# A TCP port nothing listens on, away from Slurm's defaults (6817-6819).
used=$(ss -Hltn | awk '{print $4}' | sed 's/.*://')
free_port() {
  p=$1
  while echo "$used" | grep -qx "$p"; do p=$((p + 1)); done
  echo "$p"
}
base=$((20000 + $$ % 20000))
ctld_port=$(free_port "$base")
used="$used
$ctld_port"
slurmd_port=$(free_port $((ctld_port + 1)))

# munge: our own daemon, key and socket (a test may stop it; the system's stays).
m="$dir/munge"
dd if=/dev/urandom of="$m/munge.key" bs=1024 count=1 status=none
sock="$dir/munge-run/munge.socket"
chown -R munge:munge "$m" "$dir/munge-run"
chmod 0700 "$m"
chmod 0755 "$dir/munge-run"
chmod 0400 "$m/munge.key"
runuser -u munge -- munged -F --socket="$sock" --key-file="$m/munge.key" \
  --pid-file="$m/munged.pid" --seed-file="$m/munged.seed" --log-file="$m/munged.log" \
  >"$dir/munged.out" 2>&1 &
munged=$!
echo $munged >> "$dir/pids"
echo $munged > "$dir/munged.daemon"
echo "$sock" > "$dir/munge.socket"
i=0
until munge -n --socket="$sock" >/dev/null 2>&1; do
  i=$((i + 1))
  kill -0 "$munged" 2>/dev/null && [ $i -lt 100 ] || cannot "munged did not start: $(cat "$dir/munged.out" "$m/munged.log" 2>/dev/null | tail -n 5)"
  sleep 0.1
done

cat > "$dir/slurm.conf" <<CONF
ClusterName=$cluster
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$sock
CredType=cred/munge
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
MessageTimeout=3
MpiDefault=none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=short Nodes=$host Default=NO MaxTime=5 State=UP
CONF
export SLURM_CONF="$dir/slurm.conf"
slurmctld -D -i >"$dir/slurmctld.out" 2>&1 &
ctld=$!
echo $ctld >> "$dir/pids"
echo $ctld > "$dir/slurmctld.daemon"
slurmd -D >"$dir/slurmd.out" 2>&1 &
echo $! >> "$dir/pids"

# Ours answers: the controller on our port says our cluster name (another Slurm would
# say its own), and the node is idle.
i=0
until [ "$(scontrol show config 2>/dev/null | awk '$1 == "ClusterName" {print $3}')" = "$cluster" ] \
  && sinfo -h -p debug -o %T 2>/dev/null | grep -qx idle; do
  i=$((i + 1))
  kill -0 "$ctld" 2>/dev/null || cannot "slurmctld exited: $(tail -n 5 "$dir/slurmctld.log" "$dir/slurmctld.out" 2>/dev/null)"
  if [ $i -ge 300 ]; then
    sinfo -p debug >&2 || true
    tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
    cannot "its controller did not answer as cluster $cluster with an idle node within 30 s"
  fi
  sleep 0.1
done
