#!/usr/bin/env bash
# A handoff JSON bumped by two processes: two workers each bump the turn counter of
# handoff.json 50 times, at the same time, and note who did it. With untorn edit (a locked
# read-modify-write through jq) the count is exactly 100.
#
# What it replaces:
#   jq '.turn += 1' handoff.json | sponge handoff.json        # no lock: increments get lost
#   flock handoff.json.lock sh -c 'jq ... > t && mv t handoff.json'   # locked, not durable
set -euo pipefail
cd "$(mktemp -d)"
trap 'rm -rf "$PWD"' EXIT

untorn write handoff.json '{"turn": 0, "last": null}'
worker() {
    for _ in $(seq 50); do
        untorn edit handoff.json -- jq --arg w "$1" '.turn += 1 | .last = $w'
    done
}
worker left & worker right &
wait

turn=$(untorn read handoff.json | jq .turn)
[ "$turn" = 100 ] || { echo "lost updates: turn=$turn" >&2; exit 1; }
# flock(1) takes the very same lock: a script that already uses it joins in safely.
flock handoff.json.lock sh -c 'jq ".turn += 1" handoff.json | untorn write handoff.json'
[ "$(untorn read handoff.json | jq .turn)" = 101 ]
echo "ok: 2 x 50 bumps = 100, plus one under flock(1)"
