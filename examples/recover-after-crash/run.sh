#!/usr/bin/env bash
# Recovering a directory after a crash: state.json was damaged by a program that writes in
# place (here: truncated by hand), and a crash left an untorn temp behind. One command
# reports what it would do (--dry-run changes nothing), then restores state.json from its
# newest valid backup and removes the orphaned temp. --json gives the same as JSON lines.
#
# What it replaces: finding the last good copy by hand, `rm .*.tmp` (and hoping no writer
# still needed one).
set -euo pipefail
cd "$(mktemp -d)"
trap 'rm -rf "$PWD"' EXIT

untorn write state.json '{"count": 1}'
untorn write --backup=3 state.json '{"count": 2}'
untorn write --backup=3 state.json '{"count": 3}'
untorn backups state.json

# The crash: a half-written state.json, and a temp its writer never removed.
printf '{"cou' > state.json
printf 'partial' > .state.json.untorn-0badc0de.tmp

untorn recover --dry-run --restore-invalid --format json .
[ -e .state.json.untorn-0badc0de.tmp ] || { echo "--dry-run changed something" >&2; exit 1; }

untorn recover --json --restore-invalid --format json . | tee actions.jsonl
jq -e -s 'map(.action) | sort == ["remove_temp", "restore"]' actions.jsonl >/dev/null
untorn check state.json
[ "$(untorn read state.json | jq .count)" = 2 ]
[ ! -e .state.json.untorn-0badc0de.tmp ]
echo "ok: state.json restored from its newest valid backup, the orphaned temp removed"
