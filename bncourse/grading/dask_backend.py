"""Where ``grade_submission`` runs: in this process, a local process pool, or Dask.

Each backend is an iterator of (key, result or exception) in completion order; the caller
(the single writer) records results as they arrive. Results do not depend on the backend:
every job carries all its inputs and the work is deterministic.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

Outcome = tuple[Any, dict | BaseException]


def run_serial(fn: Callable, jobs: dict[Any, dict]) -> Iterator[Outcome]:
    for key, job in jobs.items():
        try:
            yield key, fn(job)
        except Exception as error:  # reported per job; the others go on
            yield key, error


def _warm_up(checks: str) -> None:
    """Load what every job needs (checks, feedback templates) before the first job arrives."""
    from bncourse.grading import feedback, worker

    worker.checks_module(checks)
    feedback._exporter()


def start_pool(workers: int, checks: str) -> ProcessPoolExecutor | None:
    """Start ``workers`` processes now, so that they load while the run prepares (forkserver:
    no threads or locks inherited; the grading code is imported once, in the fork server)."""
    if workers <= 1:
        return None
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["bncourse.grading.worker"])
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    for _ in range(workers):
        pool.submit(_warm_up, checks)
    return pool


def run_local(fn: Callable, jobs: dict[Any, dict], workers: int,
              pool: ProcessPoolExecutor | None = None) -> Iterator[Outcome]:
    """Run the jobs on ``pool`` (or a new pool of ``workers`` processes); serially in this
    process when there is one worker or one job."""
    if workers <= 1 or len(jobs) <= 1:
        yield from run_serial(fn, jobs)
        return
    pool = pool or start_pool(workers, "bncourse.checks")
    with pool:
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
