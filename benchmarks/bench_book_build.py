"""Time a cold build of the book and a rebuild with nothing changed, side by side.

    .venv/bin/python benchmarks/bench_book_build.py

The cold build executes every chapter; the rebuild reuses Jupyter Book's
execution cache (``execute_notebooks: cache``), so it should take seconds. Also
prints how long each chapter took to execute, from the cache's own records.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JUPYTER_BOOK = Path(sys.executable).with_name("jupyter-book")


def build(out: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [str(JUPYTER_BOOK), "build", str(ROOT), "--path-output", str(out), "-W", "-n", "--keep-going"],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def chapter_times(out: Path) -> list[tuple[str, float]]:
    from jupyter_cache import get_cache

    cache = get_cache(out / "_build" / ".jupyter_cache")
    return sorted(
        (Path(record.uri).name, record.data.get("execution_seconds", float("nan")))
        for record in cache.list_cache_records()
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        cold = build(out)
        warm = build(out)
        print(f"cold build: {cold:7.1f} s")
        print(f"rebuild   : {warm:7.1f} s   (cold/rebuild = {cold / warm:.1f}x)")
        for name, seconds in chapter_times(out):
            print(f"  executed {name:28s} {seconds:6.1f} s")


if __name__ == "__main__":
    main()
