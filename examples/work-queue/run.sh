#!/usr/bin/env bash
# A YAML work queue that five workers claim from: queue.yaml is a YAML list of jobs; each
# worker takes the first one under the queue's lock and records its claim in a durable log.
# Every job is claimed exactly once.
#
# What it replaces:
#   flock queue.yaml.lock yq -i 'del(.[0])' queue.yaml
# `yq -i` rewrites the file in place through its own temp: not fsynced, and a crash can leave
# it empty. Here the whole claim (read the head, write the rest) runs under `untorn lock`, the
# same lock as `flock queue.yaml.lock`, and the rest is written with `untorn write`.
# With yq at hand the edit is one command: untorn edit queue.yaml -- yq 'del(.[0])'
# (mikefarah's yq v4; Debian's yq, a jq wrapper, needs -y to print YAML).
set -euo pipefail
cd "$(mktemp -d)"
trap 'rm -rf "$PWD"' EXIT

for i in $(seq -w 1 20); do echo "- job-$i"; done | untorn write queue.yaml

worker() {
    while :; do
        job=$(untorn lock queue.yaml -- sh -c '
            job=$(sed -n "1s/^- //p" queue.yaml)
            [ -n "$job" ] || exit 0
            sed 1d queue.yaml | untorn write queue.yaml
            echo "$job"')
        [ -n "$job" ] || return 0
        untorn append claims.log "$1 $job"
    done
}
for w in w1 w2 w3 w4 w5; do worker "$w" & done
wait

claimed=$(untorn tail -n 100 claims.log | awk '{print $2}' | sort)
[ "$(echo "$claimed" | wc -l)" = 20 ] || { echo "not 20 claims" >&2; exit 1; }
[ "$(echo "$claimed" | uniq | wc -l)" = 20 ] || { echo "a job claimed twice" >&2; exit 1; }
untorn check --format yaml queue.yaml
echo "ok: 20 jobs, each claimed once by one of 5 workers"
