#!/usr/bin/env python3
"""Start-up and local-write latency of untorn binaries, interleaved in one run (a report).

Usage: scripts/bench-startup.py BINARY... [--rounds N] [--dir DIR]
For each round, every binary runs `--version` and then `write DIR/f.json '{"n": 1}'` once, in a
rotating order; medians and the ratio of each binary to the first are printed. Used for issue
16: the `untorn` with s3:// support (object_store, tokio, rustls linked in, never started for a
local path) against the build before it and the build without the `remote` feature.
"""
import os, statistics, subprocess, sys, tempfile, time

args = sys.argv[1:]
rounds, d = 300, None
if "--rounds" in args:
    i = args.index("--rounds"); rounds = int(args[i + 1]); del args[i:i + 2]
if "--dir" in args:
    i = args.index("--dir"); d = args[i + 1]; del args[i:i + 2]
bins = args
d = d or tempfile.mkdtemp(prefix="untorn-startup-")
target = os.path.join(d, "f.json")
res = {b: {"version": [], "write": []} for b in bins}
env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}

def run(cmd):
    t = time.perf_counter_ns()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, env=env, check=True)
    return (time.perf_counter_ns() - t) / 1000

for r in range(rounds + 10):
    order = bins[r % len(bins):] + bins[:r % len(bins)]
    for b in order:
        v = run([b, "--version"])
        w = run([b, "write", target, '{"n": 1}'])
        if r >= 10:
            res[b]["version"].append(v)
            res[b]["write"].append(w)

base = bins[0]
for what in ("version", "write"):
    m0 = statistics.median(res[base][what])
    print(f"{what} ({'start-up' if what == 'version' else 'local write, ' + d}), median of {rounds}:")
    for b in bins:
        m = statistics.median(res[b][what])
        print(f"  {b}: {m:.0f} us  ({m / m0:.3f}x of {os.path.basename(base)})")
