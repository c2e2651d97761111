#!/bin/bash
# make check-slurm: a real Slurm cluster (tests/slurm/cluster.sh: munged, slurmctld, two slurmd
# "nodes" n1 and n2 on this machine) renders job tables through the project's own slurm/ templates,
# submitted with sbatch exactly as the README shows, from the repository folder. Every case asserts
# on the job table and on the PNG files, and prints the job's log when it fails.
#
#   tests/slurm/run.sh [CASE...]      (default: every case; names below, e.g. srun preempt_term)
#
# Needs build/sdrender and build/tests (make tests) and the Slurm packages
# (scripts/install-deps.sh --slurm). Prints "N passed, N failed" and exits non-zero on a failure.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=$ROOT/${SDRENDER_BUILD:-build}/sdrender
TD=$(cd "${SDRENDER_TESTDATA:-../shared/testdata}" && pwd)
MODEL=$TD/models/tiny-sd15
rm -rf /tmp/sdrender-slurm.*   # what a killed earlier run left (its daemons go in cluster.sh up)
WORK=$(mktemp -d /tmp/sdrender-slurm.XXXXXX)
CLUSTER=$ROOT/tests/slurm/cluster.sh

# the environment of every job (sbatch exports the submitter's): root may run mpirun; Open MPI may
# use loopback between the simulated nodes; one thread per rank (more ranks than cores)
eval "export $("$CLUSTER" env)"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=1 SDRENDER_GRACE=20
unset SDRENDER SDRENDER_RUN_ARGS

cleanup() {
    scancel --full --signal=KILL --user=root >/dev/null 2>&1 || true
    "$CLUSTER" down
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "slurm: $*"; }
fail() { echo "slurm: FAIL: $*"; return 1; }

# ---- helpers -------------------------------------------------------------------------------------

# submit [sbatch options] SCRIPT ARGS -> prints the job id. Logs go to $WORK (appended across
# requeues); the job starts in the repository folder, as when a user submits from there.
submit() { sbatch --parsable --open-mode=append -o "$WORK/job-%j.out" "$@" | cut -d';' -f1; }

job_state() { scontrol -o show job "$1" 2>/dev/null | grep -oP 'JobState=\K\S+'; }

# wait_job ID [SECONDS] -> prints the final state (COMPLETED, FAILED, ...), or TIMEOUT
wait_job() {
    local id=$1 limit=${2:-180} t0=$SECONDS st
    while :; do
        st=$(job_state "$id")
        case $st in
            PENDING | CONFIGURING | RUNNING | COMPLETING | SUSPENDED | REQUEUED | REQUEUE_FED | REQUEUE_HOLD | RESIZING | SIGNALING | STAGE_OUT | "") ;;
            *)
                # a job being requeued can look finished for a few seconds: final only if it stays so
                sleep 5
                [ "$(job_state "$id")" = "$st" ] && { echo "$st"; return 0; } ;;
        esac
        if [ $((SECONDS - t0)) -ge "$limit" ]; then echo TIMEOUT; return 0; fi
        sleep 0.5
    done
}

job_log() { echo "----- log of job $1"; cat "$WORK/job-$1.out" 2>/dev/null; echo "----- end of log"; }

sql() { sqlite3 -batch -noheader "$1" "$2"; }

# wait_done DB N [SECONDS]: until N jobs of DB are done
wait_done() {
    local t0=$SECONDS
    while [ "$(sql "$1" "SELECT count(*) FROM jobs WHERE status='done'" 2>/dev/null || echo 0)" -lt "$2" ]; do
        [ $((SECONDS - t0)) -ge "${3:-120}" ] && return 1
        sleep 0.2
    done
}

# The mixed table: row i of N differs in prompt, negative prompt, sampler, steps, CFG scale, seed
# and size. rows_args I prints the generate options of row I; make_table DB N writes the jsonl and
# enqueues it.
SAMPLERS=(euler_a ddim euler dpm++2m pndm lms heun unipc)
row_fields() { # I -> "prompt|negative|sampler|steps|cfg|seed|W|H"
    local i=$1
    echo "a picture number $i of a red house|$([ $((i % 3)) = 0 ] && echo blurry)|${SAMPLERS[$((i % 8))]}|$((2 + i % 4))|$((3 + i % 5)).5|$((1000 + 7 * i))|$((48 + 16 * (i % 2)))|$((64 - 16 * (i % 3 == 1)))"
}
make_table() {
    local db=$1 n=$2 i f
    local jsonl=${db%.db}.jsonl
    : >"$jsonl"
    for i in $(seq 1 "$n"); do
        IFS='|' read -r p neg s st cfg seed w h <<<"$(row_fields "$i")"
        printf '{"prompt":"%s","negative_prompt":"%s","sampler":"%s","steps":%s,"cfg_scale":%s,"seed":%s,"width":%s,"height":%s}\n' \
            "$p" "$neg" "$s" "$st" "$cfg" "$seed" "$w" "$h" >>"$jsonl"
    done
    "$BIN" enqueue --db "$db" "$jsonl" >/dev/null
}

# The reference PNGs: each row through `sdrender generate` (made once, for the largest table).
REF=$WORK/ref
make_refs() {
    local n=$1 i
    mkdir -p "$REF"
    for i in $(seq 1 "$n"); do
        [ -f "$REF/$(printf %08d "$i").png" ] && continue
        IFS='|' read -r p neg s st cfg seed w h <<<"$(row_fields "$i")"
        "$BIN" generate -q -m "$MODEL" -p "$p" -n "$neg" --sampler "$s" --steps "$st" --cfg-scale "$cfg" \
            --seed "$seed" -W "$w" -H "$h" --threads 1 -o "$REF/$(printf %08d "$i").png" >/dev/null || return 1
    done
}

# check_table DB OUT N: all N jobs done; each done row's PNG exists, its SHA-256 is the row's and
# its bytes are generate's; no temporary files; the integrity check passes
check_table() {
    local db=$1 out=$2 n=$3 id path sha
    local done_n
    done_n=$(sql "$db" "SELECT count(*) FROM jobs WHERE status='done'")
    [ "$done_n" = "$n" ] || { fail "$db: $done_n of $n jobs done: $(sql "$db" "SELECT status, count(*) FROM jobs GROUP BY status")"; return 1; }
    "$BIN" status --db "$db" --json | grep -q "\"done\": $n," || { fail "status --json does not say $n done"; return 1; }
    [ "$(sql "$db" 'PRAGMA integrity_check')" = ok ] || { fail "$db: integrity_check"; return 1; }
    while IFS='|' read -r id path sha; do
        [ -f "$path" ] || { fail "job $id: no PNG at $path"; return 1; }
        [ "$(sha256sum "$path" | cut -d' ' -f1)" = "$sha" ] || { fail "job $id: PNG SHA-256 differs from the row's"; return 1; }
        cmp -s "$path" "$REF/$(printf %08d "$id").png" || { fail "job $id: PNG differs from sdrender generate's"; return 1; }
    done < <(sql "$db" "SELECT id, output_path, png_sha256 FROM jobs ORDER BY id")
    if ls "$out" | grep -q '\.tmp'; then fail "temporary files left in $out: $(ls "$out" | grep '\.tmp')"; return 1; fi
    return 0
}

# rendered_once LOG...: no job id is reported done twice in the logs (no job rendered twice)
rendered_once() {
    local dups
    dups=$(cat "$@" | grep -oP 'sdrender run: job \K[0-9]+(?= done by)' | sort | uniq -d)
    [ -z "$dups" ] || { fail "jobs rendered more than once: $dups"; return 1; }
}

# ---- cases ---------------------------------------------------------------------------------------

# render_20 NAME TEMPLATE: a mixed 20-job table rendered through TEMPLATE on 2 nodes x 2 tasks; the
# job completes, every PNG is generate's, and jobs were rendered on both nodes
render_20() {
    local d=$WORK/$1 id st hosts
    mkdir -p "$d"
    make_table "$d/jobs.db" 20
    id=$(submit --nodes=2 --ntasks-per-node=2 "$2" "$d/jobs.db" "$MODEL" "$d/out")
    st=$(wait_job "$id")
    [ "$st" = COMPLETED ] || { job_log "$id"; fail "job $id ended $st"; return 1; }
    check_table "$d/jobs.db" "$d/out" 20 || { job_log "$id"; return 1; }
    hosts=$(sql "$d/jobs.db" "SELECT DISTINCT substr(claimed_by, 1, instr(claimed_by, ':') - 1) FROM jobs ORDER BY 1" | tr '\n' ' ')
    [ "$hosts" = "n1 n2 " ] || { job_log "$id"; fail "jobs were rendered on '$hosts', not on n1 and n2"; return 1; }
    [ "$(sql "$d/jobs.db" "SELECT host || ' ' || ranks || ' ' || end_status FROM runs")" = "n1 4 complete" ] ||
        { fail "runs table: $(sql "$d/jobs.db" 'SELECT * FROM runs')"; return 1; }
}

# render.sbatch: srun --mpi=pmix, the binary found from the submit folder
case_srun() { render_20 srun slurm/render.sbatch; }

# render-mpirun.sbatch: the same table through mpirun inside the allocation
case_mpirun() { render_20 mpirun slurm/render-mpirun.sbatch; }

# preemption: a --requeue job is signalled in the middle (HOW = term: scancel --signal=TERM to the
# ranks; requeue: scontrol requeue). It stops within the grace with nothing lost, goes back to the
# queue, and the requeued job finishes the table; no job is rendered twice.
preempt() {
    local how=$1 d=$WORK/preempt-$1 id st t_sig
    mkdir -p "$d"
    make_table "$d/jobs.db" 40
    id=$(submit --requeue --nodes=2 --ntasks-per-node=2 slurm/render.sbatch "$d/jobs.db" "$MODEL" "$d/out")
    wait_done "$d/jobs.db" 4 120 || { job_log "$id"; fail "no progress before the signal"; return 1; }
    t_sig=$(date +%s.%N)
    if [ "$how" = term ]; then scancel --signal=TERM "$id"; else scontrol requeue "$id"; fi
    # Slurm holds a requeued job back for about two minutes (BeginTime); the test lets it start at once
    # (asked again while it stays pending: an update that lands before the requeue is complete is lost)
    # Not in the requeue's own second, though: slurmd refuses a launch whose credential is not newer
    # (in whole seconds) than the revocation of the job's previous credential ("Job credential revoked").
    local i seen=0 now_st
    for i in $(seq 240); do
        now_st=$(job_state "$id")
        if [ "$now_st" = PENDING ]; then
            seen=$((seen + 1))
            [ "$seen" -ge 5 ] && scontrol update JobId="$id" StartTime=now 2>/dev/null
        elif [ "$seen" -ge 1 ] || [ "$now_st" = COMPLETED ]; then
            break
        fi
        sleep 0.5
    done
    st=$(wait_job "$id" 240)
    [ "$st" = COMPLETED ] || { job_log "$id"; fail "job $id ended $st"; return 1; }
    log "runs: $(sql "$d/jobs.db" "SELECT group_concat(id || ' ' || end_status || ' ' || printf('%.1f', started_at - $t_sig) || '..' || printf('%.1f', ended_at - $t_sig), '; ') FROM runs") (s from the signal)"
    check_table "$d/jobs.db" "$d/out" 40 || { job_log "$id"; return 1; }
    rendered_once "$WORK/job-$id.out" || { job_log "$id"; return 1; }
    # the first run stopped (not lost), within the grace of the signal; a later run completed
    local first
    first=$(sql "$d/jobs.db" "SELECT end_status || ' ' || (ended_at - $t_sig < $SDRENDER_GRACE + 5) FROM runs ORDER BY id LIMIT 1")
    [ "$first" = "stopped 1" ] || { job_log "$id"; fail "first run: '$first' (want stopped within the grace): $(sql "$d/jobs.db" 'SELECT * FROM runs')"; return 1; }
    [ "$(sql "$d/jobs.db" "SELECT end_status FROM runs ORDER BY id DESC LIMIT 1")" = complete ] || { fail "last run did not complete"; return 1; }
    # a stop puts in-flight jobs back without counting an attempt (nothing failed, nothing was lost)
    [ "$(sql "$d/jobs.db" "SELECT count(*) FROM jobs WHERE attempts <> 0")" = 0 ] ||
        { fail "attempts were counted: $(sql "$d/jobs.db" 'SELECT id, attempts FROM jobs WHERE attempts <> 0')"; return 1; }
    grep -q "requeue" "$WORK/job-$id.out" || scontrol -o show job "$id" | grep -q 'Restarts=[1-9]' ||
        { job_log "$id"; fail "the job was not requeued"; return 1; }
}
case_preempt_term() { preempt term; }
case_preempt_requeue() { preempt requeue; }

# node death: n2's slurmd and its ranks are killed with SIGKILL mid-run; the job ends; a resubmission
# with --takeover (the one-master guard would otherwise wait out the dead run's heartbeat) finishes
# every job exactly once
case_node_death() {
    local d=$WORK/node-death id st id2 pids p
    mkdir -p "$d"
    make_table "$d/jobs.db" 40
    id=$(submit --no-requeue --nodes=2 --ntasks-per-node=2 slurm/render.sbatch "$d/jobs.db" "$MODEL" "$d/out")
    wait_done "$d/jobs.db" 4 120 || { job_log "$id"; fail "no progress before the node died"; return 1; }
    pids=$(for p in $(pgrep -x sdrender); do
        tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx 'SLURMD_NODENAME=n2' && echo "$p $(ps -o ppid= -p "$p")"
    done)
    [ -n "$pids" ] || { job_log "$id"; fail "no ranks found on n2"; return 1; }
    kill -KILL $(cat "$("$CLUSTER" state)/run/slurmd-n2.pid") $pids 2>/dev/null
    st=$(wait_job "$id" 180)
    case $st in COMPLETED | TIMEOUT) job_log "$id"; fail "job $id ended $st after its node died"; return 1 ;; esac
    "$CLUSTER" start-node n2 || { fail "n2 did not come back"; return 1; }
    SDRENDER_RUN_ARGS=--takeover id2=$(submit --nodes=2 --ntasks-per-node=2 slurm/render.sbatch "$d/jobs.db" "$MODEL" "$d/out")
    st=$(wait_job "$id2")
    [ "$st" = COMPLETED ] || { job_log "$id"; job_log "$id2"; fail "resubmitted job $id2 ended $st"; return 1; }
    check_table "$d/jobs.db" "$d/out" 40 || { job_log "$id2"; return 1; }
    rendered_once "$WORK/job-$id2.out" || return 1
    # a job finished by the first run is never rendered again by the second
    local again
    again=$(comm -12 <(grep -oP 'job \K[0-9]+(?= done by)' "$WORK/job-$id.out" | sort -u) \
                     <(grep -oP 'job \K[0-9]+(?= done by)' "$WORK/job-$id2.out" | sort -u) | tr '\n' ' ')
    [ -z "$again" ] || { fail "jobs done in the first run were rendered again: $again"; return 1; }
}

# job arrays: render-array.sbatch over --array=0-3 (2 tasks each, one node each), every task renders
# its shard (run --shard I/N); some tasks run at the same time on the one database; every job is done
# exactly once
case_array() {
    local d=$WORK/array id st
    mkdir -p "$d"
    make_table "$d/jobs.db" 40
    id=$(submit --array=0-3 --nodes=1 --ntasks=2 slurm/render-array.sbatch "$d/jobs.db" "$MODEL" "$d/out")
    local t
    for t in 0 1 2 3; do
        st=$(wait_job "${id}_$t")
        [ "$st" = COMPLETED ] || { cat "$WORK"/job-"$id"*.out; fail "array task $t ended $st"; return 1; }
    done
    check_table "$d/jobs.db" "$d/out" 40 || return 1
    rendered_once "$WORK"/job-"$id"*.out || return 1
    # one run per shard, each claiming only its shard's jobs
    [ "$(sql "$d/jobs.db" "SELECT group_concat(shard_index || '/' || shard_count || ':' || end_status, ' ') FROM (SELECT * FROM runs ORDER BY shard_index)")" = \
      "0/4:complete 1/4:complete 2/4:complete 3/4:complete" ] || { fail "runs: $(sql "$d/jobs.db" 'SELECT * FROM runs')"; return 1; }
    [ "$(sql "$d/jobs.db" "SELECT count(*) FROM jobs j JOIN runs r ON r.id = j.run_id WHERE j.id % 4 <> r.shard_index")" = 0 ] ||
        { fail "a job was rendered by another shard's run"; return 1; }
    # some tasks overlapped in time
    local overlaps
    overlaps=$(sql "$d/jobs.db" "SELECT count(*) FROM runs a JOIN runs b ON a.id < b.id WHERE a.started_at < b.ended_at AND b.started_at < a.ended_at")
    [ "$overlaps" -ge 1 ] || { fail "no two array tasks ran at the same time"; return 1; }
    log "array: $overlaps pairs of tasks overlapped"
}

# sdrender metrics as a job that waits for the render job (afterok): the scores land in the table
case_metrics() {
    local d=$WORK/metrics id id2 st inc=$TD/metrics/inception_random_fp16.safetensors
    mkdir -p "$d/real"
    make_table "$d/jobs.db" 8
    for f in "$TD"/metrics/images/img*.png; do ln -s "$f" "$d/real/"; done
    "$BIN" stats -q --images "$d/real" -o "$d/real.npz" --inception "$inc" >/dev/null || { fail "stats"; return 1; }
    id=$(submit --nodes=2 --ntasks-per-node=2 slurm/render.sbatch "$d/jobs.db" "$MODEL" "$d/out")
    id2=$(submit --dependency=afterok:"$id" --nodes=1 --ntasks=2 slurm/metrics.sbatch "$d/jobs.db" "$d/real.npz" --inception "$inc")
    st=$(wait_job "$id2")
    [ "$st" = COMPLETED ] || { job_log "$id"; job_log "$id2"; fail "metrics job $id2 ended $st"; return 1; }
    [ "$(job_state "$id")" = COMPLETED ] || { fail "render job did not complete first"; return 1; }
    check_table "$d/jobs.db" "$d/out" 8 || { job_log "$id"; return 1; }
    local names
    names=$(sql "$d/jobs.db" "SELECT group_concat(name, ' ') FROM (SELECT name FROM metrics WHERE value IS NOT NULL ORDER BY name)")
    for m in fid precision recall density coverage; do
        case " $names " in *" $m "*) ;; *) job_log "$id2"; fail "metric $m missing from the table (have: $names)"; return 1 ;; esac
    done
}

# tensor parallelism across nodes: render.sbatch with SDRENDER_RUN_ARGS="--tp 2" on 2 nodes, ranks
# placed by a host file (n1 n2 n1 n2 n1; Slurm's --distribution=arbitrary), so each worker group (ranks 1-2, 3-4) has one rank on each node (the leaders say
# where their group lies). CFG-parallel (auto for groups of 2) PNGs are byte-identical to one rank's,
# so the table must match the single-rank references.
case_tp() {
    local d=$WORK/tp id st hosts
    mkdir -p "$d"
    make_table "$d/jobs.db" 10
    printf 'n1\nn2\nn1\nn2\nn1\n' >"$d/hosts"
    id=$(SLURM_HOSTFILE="$d/hosts" SDRENDER_RUN_ARGS="--tp 2" submit --nodes=2 --ntasks=5 \
        --distribution=arbitrary slurm/render.sbatch "$d/jobs.db" "$MODEL" "$d/out")
    st=$(wait_job "$id")
    [ "$st" = COMPLETED ] || { job_log "$id"; fail "job $id ended $st"; return 1; }
    check_table "$d/jobs.db" "$d/out" 10 || { job_log "$id"; return 1; }
    [ "$(sql "$d/jobs.db" "SELECT ranks || ' ' || group_size || ' ' || parallel || ' ' || end_status FROM runs")" = "5 2 cfg complete" ] ||
        { job_log "$id"; fail "runs table: $(sql "$d/jobs.db" 'SELECT * FROM runs')"; return 1; }
    local groups
    groups=$(grep -cE 'leading a group of 2 ranks on (n1, n2|n2, n1)$' "$WORK/job-$id.out")
    [ "$groups" = 2 ] || { job_log "$id"; fail "$groups of 2 groups span both nodes"; return 1; }
}

# ---- main ----------------------------------------------------------------------------------------

ALL="srun mpirun preempt_term preempt_requeue node_death array metrics tp"
CASES=${*:-$ALL}
[ -x "$BIN" ] || { echo "slurm: no $BIN (run make first)"; exit 2; }
t0=$SECONDS
"$CLUSTER" up || { echo "slurm: the cluster did not start"; exit 1; }
log "cluster up in $((SECONDS - t0)) s: $(sinfo -h -N -o '%N %t' | tr '\n' ' ')"
make_refs 40 || { echo "slurm: sdrender generate failed for the reference images"; exit 1; }
passed=0 failed=0 failed_names=""
for c in $CASES; do
    t=$SECONDS
    log "case $c"
    if "case_$c"; then
        passed=$((passed + 1)); log "ok $c ($((SECONDS - t)) s)"
    else
        failed=$((failed + 1)); failed_names="$failed_names $c"; log "FAILED $c ($((SECONDS - t)) s)"
    fi
done
log "$((SECONDS - t0)) s in all${failed_names:+; failed:$failed_names}"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
