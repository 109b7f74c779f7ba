#!/usr/bin/env bash
# Start/stop a single-node SLURM cluster on localhost for the tests (no systemd needed).
#   tests/slurm/cluster.sh install        apt-get install slurm-wlm munge (as root)
#   tests/slurm/cluster.sh start DIR      write DIR/slurm.conf, start munged, slurmctld, slurmd
#   tests/slurm/cluster.sh stop DIR       stop the daemons started by `start` (by pidfile)
# Clients find the cluster through SLURM_CONF=DIR/slurm.conf.
set -euo pipefail
cmd=${1:?install|start|stop}
dir=${2:-}

case "$cmd" in
install)
    if command -v slurmctld >/dev/null && command -v munged >/dev/null; then exit 0; fi
    [ "$(id -u)" = 0 ] || { echo "need root to install slurm-wlm" >&2; exit 2; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq slurm-wlm munge >/dev/null
    ;;
start)
    mkdir -p "$dir"/state "$dir"/spool
    dir=$(cd "$dir" && pwd)
    host=$(hostname -s)
    read -r cpus mem < <(slurmd -C | awk -F'[ =]' '/^NodeName/ {for (i=1;i<=NF;i++) {if ($i=="CPUs") c=$(i+1); if ($i=="RealMemory") m=$(i+1)}; print c, m}')
    mem=$((mem - 1024))
    cat > "$dir/slurm.conf" <<CONF
ClusterName=nsbitest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=7200
ReturnToService=2
SchedulerType=sched/backfill
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF="$dir/slurm.conf"
    # srun inside batch jobs reads the default location: link ours there unless a real
    # configuration exists (never overwrite a site's slurm.conf)
    if [ -L /etc/slurm/slurm.conf ] || [ ! -e /etc/slurm/slurm.conf ]; then
        mkdir -p /etc/slurm && ln -sfn "$SLURM_CONF" /etc/slurm/slurm.conf
        touch "$dir/conf-linked-by-us"
    fi
    if ! pgrep -x munged >/dev/null; then
        mkdir -p /run/munge /var/log/munge /var/lib/munge
        chown munge:munge /run/munge /var/log/munge /var/lib/munge
        [ -s /etc/munge/munge.key ] || runuser -u munge -- /usr/sbin/mungekey --create
        runuser -u munge -- /usr/sbin/munged --pid-file="/run/munge/munged.pid"
        touch "$dir/munged.started-by-us"
    fi
    slurmctld -f "$SLURM_CONF"
    slurmd -f "$SLURM_CONF"
    for _ in $(seq 60); do
        if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then exit 0; fi
        sleep 1
    done
    echo "SLURM node did not become idle; see $dir/slurmctld.log and $dir/slurmd.log" >&2
    exit 1
    ;;
stop)
    for d in slurmd slurmctld; do
        if [ -s "$dir/$d.pid" ]; then kill "$(cat "$dir/$d.pid")" 2>/dev/null || true; fi
    done
    if [ -e "$dir/conf-linked-by-us" ] && [ "$(readlink /etc/slurm/slurm.conf)" = "$dir/slurm.conf" ]; then
        rm -f /etc/slurm/slurm.conf "$dir/conf-linked-by-us"
    fi
    if [ -e "$dir/munged.started-by-us" ] && [ -s /run/munge/munged.pid ]; then
        kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
        rm -f "$dir/munged.started-by-us"
    fi
    ;;
*)
    echo "unknown command $cmd" >&2; exit 2 ;;
esac
