#!/usr/bin/env bash
# Three config files changed together: app.json, db.yaml and cache.toml must agree (a new
# port in all three). untorn txn makes all three changes visible and durable together, or
# none, even across a power cut; new content that is not valid for its file's format stops
# the whole transaction (exit 12) before anything changes.
#
# What it replaces:
#   cp new/app.json app.json && cp new/db.yaml db.yaml && cp new/cache.toml cache.toml
# A crash (or an error) in the middle leaves some files old and some new; cp truncates each
# file in place, so a reader can see half a file.
set -euo pipefail
cd "$(mktemp -d)"
trap 'rm -rf "$PWD"' EXIT

untorn write app.json '{"db_port": 5432}'
untorn write db.yaml 'port: 5432'
untorn write cache.toml 'db_port = 5432'

mkdir new
echo '{"db_port": 6432}' > new/app.json
echo 'port: 6432' > new/db.yaml
echo 'db_port = 6432' > new/cache.toml
untorn txn put app.json=new/app.json put db.yaml=new/db.yaml put cache.toml=new/cache.toml
grep -q 6432 app.json && grep -q 6432 db.yaml && grep -q 6432 cache.toml

# A broken new db.yaml: nothing changes, and the message names it.
echo '{"db_port": 7432}' > new/app.json
echo 'port: [7432' > new/db.yaml
echo 'db_port = 7432' > new/cache.toml
set +e
untorn txn put app.json=new/app.json put db.yaml=new/db.yaml put cache.toml=new/cache.toml 2>err.txt
code=$?
set -e
[ "$code" = 12 ] || { echo "expected exit 12, got $code" >&2; exit 1; }
grep -q "new/db.yaml" err.txt
grep -q 6432 app.json && grep -q 6432 db.yaml && grep -q 6432 cache.toml
echo "ok: three files changed together, and not at all when one change is invalid"
