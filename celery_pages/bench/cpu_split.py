#!/usr/bin/env python3
"""Where a round trip's CPU goes: the broker's and the bench process's.

Runs `celery_pages bench ...` (the command line given), samples the CPU
time of the bench process and of the local RabbitMQ (beam.smp) every 50 ms
from /proc, and splits the samples into the bench's three timed runs (in
run order: tasks, task-shaped raw, bare raw) by the durations it prints.
Prints, for each run, microseconds of CPU per round trip in the broker and
in the bench process (caller and worker together). Linux, local broker
only; the 0.1 s at each run's edges are left out.

    celery_pages/bench/cpu_split.py target/release/celery_pages bench --tasks 30000
"""

import re
import subprocess
import sys
import time

TICK = 0.01  # seconds per /proc clock tick (USER_HZ is 100 on Linux)


def cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def main(command):
    found = subprocess.run(["pgrep", "-f", "beam.smp.*rabbit"], capture_output=True, text=True)
    if not found.stdout.split():
        sys.exit("no local RabbitMQ (beam.smp) to measure")
    broker = int(found.stdout.split()[0])
    bench = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    samples = []
    while bench.poll() is None:
        own = cpu_ticks(bench.pid)
        if own is not None:
            samples.append((time.monotonic(), cpu_ticks(broker), own))
        time.sleep(0.05)
    output = bench.stdout.read()
    print(output.strip())
    rates = dict(re.findall(r"^(celery add tasks|raw AMQP round trips|raw AMQP, task-shaped):\s+(\d+)/s", output, re.M))
    durations = dict(re.findall(r"^(celery add tasks|raw AMQP round trips|raw AMQP, task-shaped):.*in ([0-9.]+) s\)", output, re.M))
    if len(rates) != 3 or len(durations) != 3:
        sys.exit("the bench did not print its three runs")
    end = samples[-1][0]
    bare_start = end - float(durations["raw AMQP round trips"])
    shaped_start = bare_start - float(durations["raw AMQP, task-shaped"])
    tasks_start = shaped_start - float(durations["celery add tasks"])
    runs = [
        ("tasks", "celery add tasks", tasks_start, shaped_start),
        ("raw, task-shaped", "raw AMQP, task-shaped", shaped_start, bare_start),
        ("raw, bare", "raw AMQP round trips", bare_start, end),
    ]
    print()
    print(f"{'run':18} {'per s':>7} {'broker us/trip':>15} {'bench us/trip':>14} {'cores busy':>11}")
    for name, key, start, stop in runs:
        inside = [s for s in samples if start + 0.1 <= s[0] <= stop - 0.1]
        if len(inside) < 2:
            sys.exit("a run was too short to sample: give more --tasks")
        seconds = inside[-1][0] - inside[0][0]
        broker_cores = (inside[-1][1] - inside[0][1]) * TICK / seconds
        bench_cores = (inside[-1][2] - inside[0][2]) * TICK / seconds
        rate = int(rates[key])
        print(
            f"{name:18} {rate:>7} {broker_cores * 1e6 / rate:>15.1f} "
            f"{bench_cores * 1e6 / rate:>14.1f} {broker_cores + bench_cores:>11.2f}"
        )


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
