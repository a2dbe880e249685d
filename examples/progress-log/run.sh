#!/usr/bin/env bash
# A progress log that survives a crash: a worker appends one JSON record per finished step
# (untorn append --jsonl: durable when it exits 0, O(record)); it is killed (SIGKILL) half
# way; a new run resumes after the last recorded step. A record torn by a crash (here made
# by hand) is cut before the next append, with a warning; complete records are never lost.
#
# What it replaces:
#   echo "{\"step\": $n}" >> progress.jsonl
# `>>` is not durable (a power cut loses acknowledged steps, or leaves zeros), and a torn last
# line glues onto the next record.
set -euo pipefail
cd "$(mktemp -d)"
trap 'rm -rf "$PWD"' EXIT

work() {
    # Resume after the last complete record (none: start at 1).
    local last
    last=$(untorn tail -n 1 --jsonl progress.jsonl 2>/dev/null | jq -r '.step // 0')
    for n in $(seq $((${last:-0} + 1)) 40); do
        sleep 0.01 # the step's work
        untorn append --jsonl progress.jsonl "{\"step\": $n}"
    done
}

# The worker in a process group of its own, so that SIGKILL reaches an append in flight too.
setsid bash -c "$(declare -f work); work" & pid=$!
until [ "$(untorn tail -n 1 --jsonl progress.jsonl 2>/dev/null | jq '.step // 0')" -ge 10 ] 2>/dev/null; do
    sleep 0.02
done
kill -KILL -- "-$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
echo "killed after $(untorn tail -n 1 --jsonl progress.jsonl | jq .step) steps"

# As if the crash had cut an append short: a torn last record.
printf '{"step": ' >> progress.jsonl
work 2>warning.txt
grep -q "torn tail" warning.txt

untorn tail -n 100 --jsonl progress.jsonl | jq -s -e 'map(.step) == [range(1; 41)]' >/dev/null
echo "ok: steps 1..40, each once, across a SIGKILL and a torn record"
