#!/usr/bin/env bash
# A task log rewritten by several agents: four agents take tasks from tasks.json and mark each
# one done, all at once. Every change is a locked read-modify-write (untorn edit): no agent
# ever loses another's change, and a crash leaves the old or the new file, never half of one.
#
# What it replaces:
#   jq '...' tasks.json > tasks.tmp && mv tasks.tmp tasks.json
# Two agents that do this at once both read the same old file, and the second `mv` throws the
# first agent's change away (a lost update); without an fsync, a power cut can leave an empty
# tasks.json.
set -euo pipefail
cd "$(mktemp -d)"
trap 'rm -rf "$PWD"' EXIT

# Twelve tasks, all to do.
jq -n '{tasks: [range(1; 13) | {id: ., status: "todo"}]}' | untorn write tasks.json

agent() {
    local name=$1
    # Take the first task still to do and mark it done by this agent, until none is left.
    while untorn edit tasks.json -- jq --arg a "$name" '
        (.tasks | map(.status == "todo") | index(true)) as $i
        | if $i == null then error("nothing left") else .tasks[$i].status = "done by " + $a end
    ' 2>/dev/null; do :; done
}
for a in ada bob cy dee; do agent "$a" & done
wait

# Every task done, by exactly one agent.
untorn read tasks.json | jq -e '[.tasks[] | select(.status | startswith("done by "))] | length == 12' >/dev/null
untorn read tasks.json | jq -r '.tasks[].status' | sort | uniq -c
echo "ok: 12 tasks, each done once, by 4 agents"
