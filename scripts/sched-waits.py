#!/usr/bin/env python3
"""Who held the cores while the add path waited for one.

Reads the text of `perf sched timehist` (one line per switch-in: time, CPU,
task, wait time, scheduling delay, run time) and reports:
- per task name and process, CPU time and scheduling delay (p50 / p99 / max);
- every switch-in of an add-path thread (THREADS, a regex on the task name)
  that waited at least MIN_MS for a core, and what ran on each CPU meanwhile,
  summed over all such waits ("<idle>" there means a core sat idle while the
  thread waited for another one).

Usage, while a benchmark runs (docs/notes/ledger-service.md, "Where the
half-rate latency goes"; the conclusions are in docs/ARCHITECTURE.md):
    perf sched record -o /dev/shm/sched.data -a -- sleep 5
    perf sched timehist -i /dev/shm/sched.data > /dev/shm/timehist.txt
    scripts/sched-waits.py /dev/shm/timehist.txt [--threads REGEX] [--min-ms 1]
"""

import argparse
import bisect
import collections
import re
import sys

TASK = re.compile(r"(.*)\[(\d+)(?:/(\d+))?\]$")


def parse(path):
    """Switch-ins as (time s, cpu, task, sch delay ms, run ms)."""
    rows = []
    with open(path) as f:
        for line in f:
            fields = line.split()
            if len(fields) < 6 or not fields[1].startswith("["):
                continue
            try:
                t, delay, run = float(fields[0]), float(fields[-2]), float(fields[-1])
            except ValueError:
                continue
            rows.append((t, fields[1].strip("[]"), " ".join(fields[2:-3]), delay, run))
    return rows


def group(task):
    """`name[tid/pid]` -> `name/pid`: threads of one role in one process."""
    m = TASK.match(task)
    if not m:
        return task
    return f"{m.group(1)}/{m.group(3) or m.group(2)}"


def quantile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("timehist")
    ap.add_argument("--threads", default="journal-writer|tokio-rt-worker|ledger-bench")
    ap.add_argument("--min-ms", type=float, default=1.0)
    args = ap.parse_args()
    rows = parse(args.timehist)
    if not rows:
        sys.exit(f"{args.timehist}: no switch-in lines")

    by_group = collections.defaultdict(list)
    for r in rows:
        by_group[group(r[2])].append(r)
    print(f"{'task/process':32} {'switches':>8} {'cpu ms':>8} {'delay p50':>9} {'p99':>7} {'max':>7}")
    for name, rs in sorted(by_group.items(), key=lambda kv: -sum(r[4] for r in kv[1]))[:20]:
        delays = sorted(r[3] for r in rs)
        print(
            f"{name:32} {len(rs):8} {sum(r[4] for r in rs):8.1f} "
            f"{quantile(delays, 0.5):9.3f} {quantile(delays, 0.99):7.3f} {delays[-1]:7.3f}"
        )

    # Each switch-in ends a stretch [t - run, t] on its CPU.
    ran = sorted((t - run / 1e3, t, cpu, group(task)) for t, cpu, task, _, run in rows)
    starts = [s for s, _, _, _ in ran]
    longest_run = max(r[4] for r in rows) / 1e3
    watched = re.compile(args.threads)
    blame = collections.Counter()
    waits, waited = 0, 0.0
    for t, _, task, delay, run in rows:
        if delay < args.min_ms or not watched.search(task):
            continue
        waits += 1
        waited += delay
        on_cpu = t - run / 1e3
        begin = on_cpu - delay / 1e3
        i = bisect.bisect_left(starts, begin - longest_run)
        for s, e, cpu, who in ran[i:]:
            if s > on_cpu:
                break
            overlap = min(e, on_cpu) - max(s, begin)
            if overlap > 0:
                blame[f"{who} (cpu {int(cpu)})" if who.startswith("<idle>") else who] += overlap * 1e3
    watched_rows = sum(1 for r in rows if watched.search(r[2]))
    print(
        f"\n{waits} of {watched_rows} switch-ins of /{args.threads}/ waited >= {args.min_ms} ms "
        f"for a core, {waited:.1f} ms in all; meanwhile the cores ran (ms):"
    )
    for who, ms in blame.most_common(15):
        print(f"  {who:40} {ms:8.1f}")


if __name__ == "__main__":
    main()
