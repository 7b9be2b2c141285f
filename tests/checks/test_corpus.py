"""The corpus of correct implementations in other styles (``corpus.py``) keeps full marks on
every BN forward and backward part, visible and hidden, of assignments 03, 04 and 06; the same
implementations with a dtype slip keep 1 - SIDE_SHARE of each part that sees the slip.
"""

from __future__ import annotations

import types

import pytest
from corpus import STYLES, slip

from bncourse.checks import PARTS
from bncourse.checks.core import SIDE_SHARE, kept_share
from bncourse.testing import run_case

FORWARD_PARTS = ["03_bn_transform-forward_2d", "03_bn_transform-forward_2d_hidden",
                 "03_bn_transform-forward_4d", "03_bn_transform-forward_4d_hidden",
                 "06_in_practice-batchnorm_forward"]
BACKWARD_PARTS = ["04_backprop-backward", "04_backprop-backward_hidden",
                  "04_backprop-backward_compact", "04_backprop-backward_compact_hidden",
                  "06_in_practice-batchnorm_backward"]


def _backward_in_notebook(forward, backward):
    """The backward as a notebook function: its globals hold the forward it is graded with."""
    def batchnorm_backward(dout, cache):
        return _impl(dout, cache)  # noqa: F821 (bound in the namespace below)

    namespace = {"_impl": backward, "batchnorm_forward": forward}
    return types.FunctionType(batchnorm_backward.__code__, namespace, "batchnorm_backward")


def parts_lost(forward, backward) -> dict[str, tuple[str, float]]:
    """part id -> (the first failing case's message, the share of the part's points kept),
    for the parts this pair loses points on."""
    students = {**dict.fromkeys(FORWARD_PARTS, forward),
                **dict.fromkeys(BACKWARD_PARTS, _backward_in_notebook(forward, backward))}
    lost = {}
    for part_id, student in students.items():
        part = PARTS[part_id]
        verdicts = [run_case(part, student, case) for case in part.cases()]
        failed = [v for v in verdicts if not v.passed]
        if failed:
            lost[part_id] = (failed[0].message, kept_share(verdicts))
    return lost


@pytest.mark.parametrize("style", sorted(STYLES))
def test_each_correct_style_keeps_full_marks(style):
    assert parts_lost(*STYLES[style]) == {}


@pytest.mark.parametrize("style", sorted(STYLES))
def test_a_dtype_slip_loses_only_parts_that_check_the_dtype(style):
    lost = parts_lost(*slip(style))
    assert lost, "no part noticed float64 results for float32 input"
    for part_id, (message, kept) in lost.items():
        assert "keep the input's dtype" in message and "25%" in message, (part_id, message)
        assert kept == 1 - SIDE_SHARE, (part_id, kept)
