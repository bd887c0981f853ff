#!/usr/bin/env python3
"""The fault campaign: `make e2e RUNS=N SEED=S` (or `python e2e/campaign.py`).

Starts the Docker cluster fresh, then N runs; each run draws 1 to 3 faults at
random (seeded) from every fault the nemesis knows, applies them one after the
other under the checker's workload, and verifies. One line per run and a
summary go to e2e/results/campaign-<time>-seed<S>.log (and stdout). Exits 1 if
any run failed. --scenarios a,b,c runs those faults, one per run, instead.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.cluster import SERVICES, Cluster  # noqa: E402
from harness.faults import FAULTS, RANDOM_FAULTS, run_scenario, summary_line  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--tag", default=None, help="image tag (MAGNETAR_TAG; default dev)")
    ap.add_argument("--scenarios", default=None, help="comma-separated faults, one per run")
    ap.add_argument("--rate", type=float, default=100.0, help="messages/s per producer")
    ap.add_argument("--max-faults", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="leave the cluster running at the end")
    ap.add_argument("--minutes", type=float, default=None,
                    help="start no run after this many minutes (the summary counts the runs done)")
    args = ap.parse_args()

    seed = args.seed if args.seed is not None else int(time.time()) % 100000
    rng = random.Random(seed)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out_path = RESULTS / f"campaign-{stamp}-seed{seed}.log"
    out = out_path.open("w")

    def emit(line: str) -> None:
        print(line, flush=True)
        out.write(line + "\n")
        out.flush()

    cluster = Cluster(tag=args.tag)
    if args.scenarios:
        plan = [[s] for s in args.scenarios.split(",")]
        unknown = [s for [s] in plan if s not in FAULTS]
        if unknown:
            print(f"unknown faults {unknown}; known: {', '.join(FAULTS)}", file=sys.stderr)
            return 2
    else:
        names = RANDOM_FAULTS
        plan = [rng.sample(names, rng.randint(1, args.max_faults)) for _ in range(args.runs)]
    emit(f"# campaign seed={seed} runs={len(plan)} images={cluster.tag} started={stamp}")
    up = cluster.up(fresh=True)
    emit(f"# cluster up in {up:.1f}s")
    results = []
    t_start = time.monotonic()
    stop = []
    # SIGTERM or Ctrl-C: finish the current run, then the summary.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(1))
    try:
        for i, faults in enumerate(plan, 1):
            if args.minutes is not None and time.monotonic() - t_start > args.minutes * 60:
                emit(f"# time limit ({args.minutes:g} min) reached after {i - 1} runs")
                break
            if stop:
                emit(f"# stopped by a signal after {i - 1} runs")
                break
            r = run_scenario(cluster, faults, f"{stamp[9:15]}-{i}", rng, rate=args.rate,
                             log_dir=RESULTS / "client-logs", log=print)
            r["run"] = i
            results.append(r)
            emit(summary_line(r))
            if not r["ok"]:
                # Keep the evidence: the last lines of every container.
                with (RESULTS / f"campaign-{stamp}-run{i}-logs.txt").open("w") as f:
                    for s in SERVICES:
                        f.write(f"--- {s} ---\n{cluster.logs(s, 200)}\n")
    finally:
        if not args.keep:
            try:
                cluster.down()
            except Exception as e:
                print(f"e2e: could not stop the cluster: {e}", file=sys.stderr)
    failed = [r for r in results if not r["ok"]]
    total = {k: sum(r.get(k, 0) for r in results)
             for k in ("acked", "lost", "order", "phantom", "dup_plain", "dup_dedup", "undelivered",
                       "meta_ops")}
    fault_count = sum(len(r.get("faults", [])) for r in results)
    rec = [r["recovery_s"] for r in results if r.get("recovery_s") == r.get("recovery_s")]
    emit(
        f"# summary seed={seed} runs={len(results)} passed={len(results) - len(failed)} "
        f"failed={len(failed)} faults={fault_count} "
        + " ".join(f"{k}={v}" for k, v in total.items())
        + (f" recovery_max_s={max(rec):.1f}" if rec else "")
    )
    emit(f"# e2e campaign: {'PASSED' if not failed and results else 'FAILED'} ({out_path})")
    return 0 if results and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
