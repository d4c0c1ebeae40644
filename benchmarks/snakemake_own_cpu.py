"""Run Snakemake in this process and print its own CPU time apart from its jobs'.

    python benchmarks/snakemake_own_cpu.py [snakemake arguments...]

The workflow's jobs are child processes, so ``time`` mixes the scheduler's cost with
theirs; ``getrusage`` separates them. Also prints how many times the ILP scheduler ran its
solver and for how long, the part of scheduling a workflow setting (``--scheduler``)
could change.
"""

from __future__ import annotations

import atexit
import resource
import runpy
import sys
import time

import snakemake.scheduling.milp as milp

started = time.monotonic()
solves = {"count": 0, "seconds": 0.0}
_solve = milp.Scheduler._solve_ilp


def _timed_solve(self, *args, **kwargs):
    begin = time.monotonic()
    try:
        return _solve(self, *args, **kwargs)
    finally:
        solves["count"] += 1
        solves["seconds"] += time.monotonic() - begin


def _report() -> None:
    own = resource.getrusage(resource.RUSAGE_SELF)
    jobs = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        f"wall {time.monotonic() - started:.1f} s | snakemake user {own.ru_utime:.1f} s "
        f"sys {own.ru_stime:.1f} s | jobs user {jobs.ru_utime:.1f} s sys {jobs.ru_stime:.1f} s "
        f"| ILP solves {solves['count']} in {solves['seconds']:.1f} s",
        file=sys.stderr,
    )


milp.Scheduler._solve_ilp = _timed_solve
atexit.register(_report)
sys.argv = ["snakemake", *sys.argv[1:]]
runpy.run_module("snakemake", run_name="__main__")
