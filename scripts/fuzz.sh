#!/bin/sh
# Coverage-guided fuzzing of lookout's parsers with AFL++ (the `afl` crate; stable Rust).
#
#   scripts/fuzz.sh TARGET DURATION     fuzz one target, e.g. `scripts/fuzz.sh remote_sample 10m`
#   scripts/fuzz.sh all DURATION        each target in turn, DURATION each
#   scripts/fuzz.sh replay [TARGET|all] no AFL: replay the corpus (and any findings in
#                                       fuzz/out/TARGET) through the plain build of a target
#   scripts/fuzz.sh list                the targets
#
# DURATION is seconds, or a number with s, m or h; with FUZZ_EXECS=N a run also ends after
# about N executions (afl-fuzz -E), whichever comes first. Installs cargo-afl if missing, builds the
# target instrumented (fuzz/target/afl), runs afl-fuzz with AFL_NO_UI for DURATION on the
# seeds in fuzz/corpus/TARGET (output in fuzz/out/TARGET, replaced on each run; hang
# timeout 1000 ms, memory limit $FUZZ_MEM_MB, default 1024 MB) at nice $FUZZ_NICE (10), then
# replays everything afl-fuzz kept (queue, crashes, hangs) through the plain build
# (a debug build in lookout's target/debug) to measure the target's peak RSS and slowest input, and prints one
# summary line per target:
#   fuzz TARGET: EXECS execs in SECS s (RATE/s), CRASHES crashes, HANGS hangs, ...
# Exits non-zero when a target had a crash or a hang. docs/fuzzing.md says how to
# reproduce a crash.
set -eu
cd "$(dirname "$0")/../fuzz"

TARGETS="remote_sample ssh_config known_hosts config_toml prometheus_response check_output record_segment serve_frames"
NICE=${FUZZ_NICE:-10}
MEM=${FUZZ_MEM_MB:-1024}

usage() {
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

seconds() {
    case "$1" in
        *h) echo $((${1%h} * 3600)) ;;
        *m) echo $((${1%m} * 60)) ;;
        *s) echo "${1%s}" ;;
        *[!0-9]* | "") echo "bad duration: $1 (e.g. 90, 90s, 10m, 2h)" >&2; exit 2 ;;
        *) echo "$1" ;;
    esac
}

known() {
    for t in $TARGETS; do [ "$t" = "$1" ] && return 0; done
    echo "unknown target: $1 (one of: $TARGETS)" >&2
    exit 2
}

# The plain (debug) build goes to lookout's target directory (target/debug/TARGET).
PLAIN=../target/debug
plain_build() {
    CARGO_TARGET_DIR=../target nice -n "$NICE" cargo build --quiet --bins
}

stat_of() { # KEY FILE
    sed -n "s/^$1 *: *//p" "$2" | head -n 1
}

fuzz_one() { # TARGET SECONDS
    t=$1 secs=$2
    out=out/$t
    rm -rf "$out"
    mkdir -p "$out"
    dict=""
    [ -f "dict/$t.dict" ] && dict="-x dict/$t.dict"
    echo "fuzzing $t for ${secs}s (log: fuzz/$out/afl.log)" >&2
    # AFL_NO_AFFINITY: do not pin a core of a shared machine; the two checks skipped are of
    # the machine's set-up (CPU governor, core_pattern), not of the target.
    # The files the harness writes and afl-fuzz's current input go to a tmpfs when there is
    # one: on a disk, creating and removing them costs more than the parsing.
    tmp=$PWD/$out/tmp
    [ -d /dev/shm ] && [ -w /dev/shm ] && tmp=/dev/shm/lookout-fuzz-$t
    rm -rf "$tmp"
    mkdir -p "$tmp"
    execs_limit=""
    [ -n "${FUZZ_EXECS:-}" ] && execs_limit="-E $FUZZ_EXECS"
    # shellcheck disable=SC2086
    AFL_NO_UI=1 AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
        AFL_TMPDIR="$tmp" LOOKOUT_FUZZ_SCRATCH="$tmp/scratch" \
        nice -n "$NICE" cargo afl fuzz -i "corpus/$t" -o "$out" -V "$secs" $execs_limit -t 1000 -m "$MEM" $dict \
        -- "target/afl/release/$t" >"$out/afl.log" 2>&1 || {
        echo "afl-fuzz failed for $t: see fuzz/$out/afl.log" >&2
        tail -n 20 "$out/afl.log" >&2
        return 1
    }
    rm -rf "$tmp"
    stats=$out/default/fuzzer_stats
    execs=$(stat_of execs_done "$stats")
    crashes=$(stat_of saved_crashes "$stats")
    hangs=$(stat_of saved_hangs "$stats")
    run=$(stat_of run_time "$stats")
    corpus=$(stat_of corpus_count "$stats")
    afl_rss=$(stat_of peak_rss_mb "$stats")
    replay=$("$PLAIN/$t" "$out/default" 2>"$out/replay.err" | tail -n 1) || true
    rate=$((execs / (run > 0 ? run : 1)))
    echo "fuzz $t: $execs execs in ${run} s ($rate/s), $crashes crashes, $hangs hangs, corpus $corpus; afl-fuzz peak RSS ${afl_rss} MB; $replay"
    [ "$crashes" = 0 ] && [ "$hangs" = 0 ]
}

[ $# -ge 1 ] || usage
case "$1" in
    list) echo "$TARGETS"; exit 0 ;;
    replay)
        which=${2:-all}
        [ "$which" = all ] || known "$which"
        plain_build
        status=0
        for t in $TARGETS; do
            [ "$which" = all ] || [ "$which" = "$t" ] || continue
            set -- "corpus/$t"
            [ -d "out/$t/default" ] && set -- "$@" "out/$t/default"
            "$PLAIN/$t" "$@" || status=1
        done
        exit $status
        ;;
esac
[ $# -eq 2 ] || usage
which=$1
secs=$(seconds "$2")
[ "$which" = all ] || known "$which"

if ! cargo afl --version >/dev/null 2>&1; then
    echo "installing cargo-afl (cargo install cargo-afl)" >&2
    nice -n "$NICE" cargo install --locked cargo-afl
fi
echo "building the targets (instrumented and plain)" >&2
CARGO_TARGET_DIR=target/afl nice -n "$NICE" cargo afl build --release --quiet --bins
plain_build

status=0
for t in $TARGETS; do
    [ "$which" = all ] || [ "$which" = "$t" ] || continue
    fuzz_one "$t" "$secs" || status=1
done
exit $status
