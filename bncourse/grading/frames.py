"""The one channel out of the sandbox: frames, and the kinds of frame, named once.

A frame is one JSON header line ``{"kind": ..., ..., "size": n}`` followed by ``n`` payload
bytes (an .npz archive for ``CASE`` frames, empty otherwise). The harness writes them
(``encode``), the sandbox reads them with a size cap (``read``), and the judge sorts them.
"""

from __future__ import annotations

import json
from typing import Any, BinaryIO

READY = "ready"  # the harness has loaded the checks; student code runs next
CELL_START = "cell_start"  # a cell is about to run: {"index"}
CELL = "cell"  # a cell ran: {"index", "status", "error", "output"}
STOPPED = "stopped"  # the harness stopped early: {"reason"}
MISSING = "missing"  # a part's target is not defined: {"part", "target"}
CASE_START = "case_start"  # a checked case is about to run: {"part", "case"}
CASE = "case"  # a checked case ran: {"part", "case", "status", "error"} + .npz payload
DONE = "done"  # every cell and case ran

HEADER_MAX = 1024 * 1024


def encode(kind: str, payload: bytes = b"", **fields: Any) -> bytes:
    """One frame as bytes."""
    header = dict(fields, kind=kind, size=len(payload))
    return json.dumps(header).encode() + b"\n" + payload


class OverBudgetError(Exception):
    """The stream announced more bytes than it may send."""


def read(stream: BinaryIO, budget: int) -> tuple[dict, bytes, int] | None:
    """The next frame of ``stream`` as (header, payload, bytes used), None at its end.

    Raises ``OverBudgetError`` before reading a payload that would take the frame past ``budget``
    bytes, ValueError (or TypeError) on a malformed header, EOFError on a cut-off payload.
    """
    line = stream.readline(HEADER_MAX)
    if not line:
        return None
    header = json.loads(line)
    if not isinstance(header, dict):
        raise ValueError("a frame header is not a JSON object")
    size = int(header.get("size", 0))
    if size < 0 or len(line) + size > budget:
        raise OverBudgetError(f"announced {size} bytes")
    payload = stream.read(size)
    if len(payload) != size:
        raise EOFError("the results stream was cut off")
    return header, payload, len(line) + size
