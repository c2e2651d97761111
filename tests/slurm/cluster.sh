#!/bin/bash
# A throw-away Slurm cluster on this one machine for the tests: a private munged, slurmctld and
# two slurmd "nodes" (n1, n2, each in its own UTS namespace so ranks see different host names),
# all with their configuration, keys, spool folders, logs and pid files under one state folder.
# Nothing outside it is written (no /etc/slurm, no system munged), so a developer's own Slurm or
# munge is left alone, and removing the folder removes every trace.
#
#   tests/slurm/cluster.sh up      stop whatever a previous (killed) run left, wipe its state, start
#   tests/slurm/cluster.sh down    stop every daemon it started, by pid, and remove the state folder
#   tests/slurm/cluster.sh env     print the environment a client needs (SLURM_CONF=...)
#   tests/slurm/cluster.sh state   print the state folder
#   tests/slurm/cluster.sh start-node NODE   start NODE's slurmd again (after a test killed it)
#
# SDRENDER_SLURM_STATE (default /run/sdrender-slurm-ci) is the state folder; SDRENDER_SLURM_NODES
# (default 2) the node count; SDRENDER_SLURM_CPUS (default 4) CPUs advertised per node (more than the
# cores, so 2 tasks per node fit beside the batch shell; slurmd trusts the configured value).
# Needs slurmctld, slurmd, slurm-client, munge (scripts/install-deps.sh --slurm installs them).
set -euo pipefail
STATE=${SDRENDER_SLURM_STATE:-/run/sdrender-slurm-ci}
NN=${SDRENDER_SLURM_NODES:-2}
NCPU=${SDRENDER_SLURM_CPUS:-4}
CTLD_PORT=16817
NODE_PORT0=16820
HOST=$(hostname -s)

# Stops each daemon named by a pid file in the state folder whose process is still one of ours
# (its command line names the state folder or is a munged/slurm daemon), TERM first, then KILL.
stop_all() {
    local f pid pids=() i
    shopt -s nullglob
    for f in "$STATE"/run/slurmd-*.pid "$STATE"/run/slurmctld.pid "$STATE"/run/munged.pid; do
        pid=$(cat "$f" 2>/dev/null || true)
        [ -n "$pid" ] || continue
        if kill -0 "$pid" 2>/dev/null && grep -qaE 'slurm|munge' "/proc/$pid/cmdline" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    for pid in "${pids[@]}"; do
        for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    # what the cluster's jobs left running (slurmstepd, job shells, ranks): every process whose
    # environment names this test cluster, or a slurmstepd (which would keep ports and files)
    local p
    for p in /proc/[0-9]*; do
        [ "${p#/proc/}" = $$ ] && continue
        if { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qx 'SLURM_CLUSTER_NAME=sdrci'; then
            kill -KILL "${p#/proc/}" 2>/dev/null || true
        fi
    done
    pkill -KILL -f "^slurmstepd" 2>/dev/null || true
    return 0
}

up() {
    stop_all
    rm -rf "$STATE"
    install -d -m 0755 "$STATE" "$STATE/run" "$STATE/log" "$STATE/ctld"
    getent hosts "$HOST" >/dev/null || { echo "cluster.sh: host name $HOST does not resolve (add it to /etc/hosts)" >&2; exit 1; }

    # 1. a private munged with its own key and socket
    mungekey --create --keyfile="$STATE/munge.key" --force >/dev/null 2>&1
    munged --force --socket="$STATE/run/munge.sock" --key-file="$STATE/munge.key" \
        --log-file="$STATE/log/munged.log" --pid-file="$STATE/run/munged.pid" --seed-file="$STATE/munged.seed"
    local i
    for i in $(seq 50); do munge -S "$STATE/run/munge.sock" -n 2>/dev/null | unmunge -S "$STATE/run/munge.sock" >/dev/null 2>&1 && break; sleep 0.1; done

    # 2. slurm.conf: nodes n1..nN on this host (multiple-slurmd), each its own port, spool and TmpFS
    local names nodeline mem
    mem=$(( $(awk '/MemTotal/{print int($2/1024)}' /proc/meminfo) * 80 / 100 / NN ))
    names=$(seq -f 'n%g' 1 "$NN")
    nodeline="NodeName=n[1-$NN] NodeHostname=$HOST NodeAddr=127.0.0.1 Port=[$NODE_PORT0-$((NODE_PORT0 + NN - 1))]"
    for n in $names; do install -d -m 0755 "$STATE/d-$n"; install -d -m 1777 "$STATE/tmp-$n"; done
    cat > "$STATE/slurm.conf" <<CONF
# written by tests/slurm/cluster.sh: a single-machine test cluster, no cgroups, no accounting
ClusterName=sdrci
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$STATE/run/munge.sock
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d-%n
TmpFS=$STATE/tmp-%n
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd-%n.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=pmix
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=10
InactiveLimit=0
KillWait=30
MinJobAge=600
Waittime=0
JobRequeue=0
$nodeline CPUs=$NCPU Sockets=1 CoresPerSocket=$NCPU ThreadsPerCore=1 RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF="$STATE/slurm.conf"

    # 3. slurmctld, then one slurmd per node
    /usr/sbin/slurmctld -i -f "$SLURM_CONF"
    for n in $names; do start_slurmd "$n"; done
    wait_idle "$NN" ""
}

# One node's slurmd in its own UTS namespace (hostname n<i>): Open MPI names shared-memory
# segments by host name, so two "nodes" with one name would share them.
start_slurmd() {
    unshare --uts -- sh -c "hostname $1 && exec /usr/sbin/slurmd -f '$STATE/slurm.conf' -N $1"
}

# wait_idle COUNT NODES: until COUNT nodes (of NODES, or of all when empty) are idle, 30 s at most
wait_idle() {
    local i idle=0
    export SLURM_CONF="$STATE/slurm.conf"
    for i in $(seq 150); do
        idle=$(sinfo -h -N -t idle -o %N ${2:+-n "$2"} 2>/dev/null | wc -l || true)
        [ "$idle" -ge "$1" ] && return 0
        sleep 0.2
    done
    echo "cluster.sh: only $idle of $1 nodes ${2:+($2) }are idle; logs:" >&2
    tail -n 20 "$STATE"/log/*.log >&2
    exit 1
}

down() {
    [ -d "$STATE" ] || return 0
    stop_all
    rm -rf "$STATE"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    env) echo "SLURM_CONF=$STATE/slurm.conf" ;;
    state) echo "$STATE" ;;
    start-node)
        start_slurmd "${2:?usage: tests/slurm/cluster.sh start-node NODE}"
        wait_idle 1 "$2" ;;
    *) echo "usage: tests/slurm/cluster.sh up|down|env|state|start-node NODE" >&2; exit 2 ;;
esac
