"""Where ``grade_submission`` runs: serially in this process, a local process pool, or Dask.

Each backend is an iterator of (key, result or exception) in completion order; the caller
(the single writer) records results as they arrive. Results do not depend on the backend:
every job carries all its inputs and the work is deterministic.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from bncourse.grading import feedback, worker

Outcome = tuple[Any, dict | BaseException]


def run_serial(fn: Callable, jobs: dict[Any, dict]) -> Iterator[Outcome]:
    for key, job in jobs.items():
        try:
            yield key, fn(job)
        except Exception as error:  # reported per job; the others go on
            yield key, error


def _warm_up(checks: str) -> None:
    """Load what every job needs (checks, feedback templates) before the first job arrives."""
    worker.checks_module(checks)
    feedback._exporter()


def start_pool(workers: int, checks: str) -> ProcessPoolExecutor | None:
    """Start ``workers`` processes now, so that they load while the run prepares.

    "spawn": each worker is a fresh interpreter that inherits no threads or locks, and is
    given this process's ``sys.path`` before it imports anything, so it grades with the same
    bncourse as this process. (A fork server starts with the working folder first on its
    path and ignores ours: run from a course folder holding its own copy of bncourse, the
    workers imported that copy while the sandbox imported ours, and every notebook failed.)
    """
    if workers <= 1:
        return None
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    for _ in range(workers):
        pool.submit(_warm_up, checks)
    return pool


def run_local(fn: Callable, jobs: dict[Any, dict], workers: int,
              pool: ProcessPoolExecutor | None = None) -> Iterator[Outcome]:
    """Run the jobs on ``pool`` when given (it stays open: the caller shuts it down), else on
    a pool of ``workers`` processes started for them, or serially in this process when there
    is one worker or one job."""
    if pool is not None:
        yield from _run_on(pool, fn, jobs)
    elif workers <= 1 or len(jobs) <= 1:
        yield from run_serial(fn, jobs)
    else:
        with start_pool(workers, "bncourse.checks") as own:
            yield from _run_on(own, fn, jobs)


def _run_on(pool: ProcessPoolExecutor, fn: Callable, jobs: dict[Any, dict]) -> Iterator[Outcome]:
    futures = {pool.submit(fn, job): key for key, job in jobs.items()}
    for future in as_completed(futures):
        try:
            yield futures[future], future.result()
        except Exception as error:
            yield futures[future], error


def run_dask(fn: Callable, jobs: dict[Any, dict], address: str) -> Iterator[Outcome]:
    """Send the jobs to the Dask scheduler at ``address`` (workers need bncourse and bwrap)."""
    from distributed import Client
    from distributed import as_completed as dask_completed

    with Client(address, set_as_default=False) as client:
        futures = {}
        for key, job in jobs.items():
            future = client.submit(fn, job, key=f"bncourse-grade-{key[0]}-{key[1]}", pure=False)
            futures[future] = key
        for future in dask_completed(list(futures), loop=client.loop):
            try:
                yield futures[future], future.result()
            except Exception as error:
                yield futures[future], error
