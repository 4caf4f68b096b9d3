#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for tests and for trying the SLURM profile
# (Debian slurm-wlm 22.05 + munge; docs/data.md).
#
#   scripts/slurm_local.sh start [DIR]   install slurm-wlm/munge if missing (apt-get, idempotent), write a munge
#                                        key and slurm.conf under DIR, start munged, slurmctld -i and slurmd, wait
#                                        until the node is idle; prints `export SLURM_CONF=DIR/slurm.conf`
#   scripts/slurm_local.sh stop [DIR]    stop the daemons this script started in DIR (their pid files), no others
#   scripts/slurm_local.sh status [DIR]  sinfo through DIR's slurm.conf
#
# DIR defaults to $CLAIMBENCH_SLURM_DIR or /tmp/claimbench-slurm. Everything (key, socket, state, logs) lives in
# DIR; clients find the cluster through SLURM_CONF. The one exception: the Snakemake job step drops SLURM_CONF
# before its nested `srun` (snakemake-executor-plugin-slurm-jobstep 0.6), so when /etc/slurm/slurm.conf does not
# exist, start links it to DIR's and stop removes that link (never a slurm.conf it did not make). Needs root
# (slurmd runs jobs as the submitting user). Exit 3: the packages are missing and cannot be installed.
set -euo pipefail

export PATH="$PATH:/usr/sbin:/sbin"  # slurmctld, slurmd, munged live in sbin
cmd=${1:-}
DIR=${2:-${CLAIMBENCH_SLURM_DIR:-/tmp/claimbench-slurm}}
CONF="$DIR/slurm.conf"
PORT=${CLAIMBENCH_SLURM_PORT:-6817}  # slurmctld; slurmd listens on PORT+1
PIDS=(slurmd slurmctld munged)       # stop order: jobs' node first, munge last
ETC_CONF=/etc/slurm/slurm.conf

die() { echo "slurm_local: $*" >&2; exit "${2:-1}"; }

alive() { [ -f "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }

install_packages() {
  local need=()
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null || need+=(slurm-wlm)
  command -v munged >/dev/null || need+=(munge)
  [ ${#need[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing Debian packages: ${need[*]}; run: sudo apt-get install -y ${need[*]}" 3
  # policy-rc.d 101 keeps apt from starting the packages' own system daemons: we start ours below
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; created=1; fi
  local rc=0
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; } || rc=$?
  [ "$created" -eq 1 ] && rm -f "$policy"
  [ "$rc" -eq 0 ] || die "apt-get install ${need[*]} failed (exit $rc)" 3
}

write_conf() {
  local host node
  host=$(hostname -s)
  # the node's real CPUs/sockets/memory as slurmd sees them, so the node is never drained for a mismatch
  node=$(slurmd -C | head -1)
  [[ "$node" == NodeName=* ]] || die "slurmd -C gave no node line: $node"
  cat > "$CONF.tmp" <<EOF
# written by scripts/slurm_local.sh: a one-node cluster for tests
ClusterName=claimbench
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
# finished jobs stay visible to squeue for 10 minutes (the executor's status checks read them there)
MinJobAge=600
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$CONF.tmp" "$CONF"
}

start() {
  install_packages
  mkdir -p "$DIR"
  chmod 700 "$DIR"  # munged refuses a world-writable socket directory
  mkdir -p "$DIR/state" "$DIR/spool"
  if alive slurmctld && alive slurmd && alive munged; then
    echo "export SLURM_CONF=$CONF"
    return 0
  fi
  write_conf
  if ! alive munged; then
    [ -f "$DIR/munge.key" ] || { dd if=/dev/urandom of="$DIR/munge.key" bs=1024 count=1 status=none; chmod 400 "$DIR/munge.key"; }
    munged --force --key-file="$DIR/munge.key" --socket="$DIR/munge.socket" --pid-file="$DIR/munged.pid" \
      --log-file="$DIR/munged.log" --seed-file="$DIR/munged.seed"
  fi
  if [ ! -e "$ETC_CONF" ] && [ ! -L "$ETC_CONF" ]; then
    mkdir -p "$(dirname "$ETC_CONF")"
    ln -s "$CONF" "$ETC_CONF"
  elif [ "$(readlink "$ETC_CONF" || true)" != "$CONF" ]; then
    echo "slurm_local: $ETC_CONF exists and is not ours: srun inside Snakemake jobs will read it" >&2
  fi
  alive slurmctld || slurmctld -i -f "$CONF"
  alive slurmd || slurmd -f "$CONF"
  export SLURM_CONF=$CONF
  local state=""
  for _ in $(seq 1 60); do
    state=$(sinfo -h -o %T 2>/dev/null || true)
    [ "$state" = idle ] && { echo "export SLURM_CONF=$CONF"; return 0; }
    sleep 0.5
  done
  die "node not idle after 30 s (sinfo: '${state}'); logs in $DIR/*.log"
}

stop() {
  local name pid
  for name in "${PIDS[@]}"; do
    alive "$name" || { rm -f "$DIR/$name.pid"; continue; }
    pid=$(cat "$DIR/$name.pid")
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    rm -f "$DIR/$name.pid"
  done
  if [ -L "$ETC_CONF" ] && [ "$(readlink "$ETC_CONF")" = "$CONF" ]; then rm -f "$ETC_CONF"; fi
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) SLURM_CONF=$CONF sinfo ;;
  *) die "usage: $0 start|stop|status [DIR]" 2 ;;
esac
