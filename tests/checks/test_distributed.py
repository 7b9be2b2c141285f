"""Assignment 07 (``bncourse.checks.distributed``): the statistics merge and SyncBN simulated
with K ranks in one process.

- every known mistake of the merge and of SyncBN's forward and backward is named on each case
  that can tell it from the right answer, the right answer passes every case, and an
  unrelated error gets the largest difference;
- the solution passes every part, the untouched stub fails every part, and every corpus
  submission of ``tests/submissions/07_distributed`` loses exactly its EXPECT_LOST parts;
- each named mistake of the catalogue, written as a student would, is named by its id;
- the float32 cases far from zero are where the naive E[x^2] - E[x]^2 merge fails.
- the ground truths are right: BN over the whole batch equals torch's (forward and autograd
  backward, float64), and the reference merge equals the statistics of the concatenated data.
"""

from __future__ import annotations

import numpy as np
import pytest
from judging import family_tests, notebook_tests, solution_namespace
from submission_builder import load_submissions

from bncourse import cpu
from bncourse.checks import PARTS, distributed
from bncourse.checks.variants import MERGE_VARIANTS, SYNC_BACKWARD_VARIANTS, SYNC_FORWARD_VARIANTS
from bncourse.testing import run_case

ASSIGNMENT = "07_distributed"


def _merge_expected(case: dict) -> dict:
    mean, m2 = (np.asarray(case[n], np.float64) for n in ("mean", "m2"))
    total, mean, m2 = cpu.merge_batch_stats(np.asarray(case["count"]), mean, m2)
    return {"total": total, "mean": mean, "m2": m2}


def _forward_expected(case: dict) -> dict:
    out, _ = distributed._whole_batch(case)
    return {"out": out}


def _backward_expected(case: dict) -> dict:
    out, cache = distributed._whole_batch(case)
    dx, dgamma, dbeta = cpu.batchnorm_backward(np.asarray(case["dout"], np.float64), cache)
    return {"out": out, "dx": dx, "dgamma": dgamma, "dbeta": dbeta}


FAMILIES = {
    "merge": (distributed.PARTS[0:2], MERGE_VARIANTS, _merge_expected, distributed.judge_merge,
              "mean"),
    "forward": (distributed.PARTS[2:4], SYNC_FORWARD_VARIANTS, _forward_expected,
                distributed.judge_forward, "x"),
    "backward": (distributed.PARTS[4:6], SYNC_BACKWARD_VARIANTS, _backward_expected,
                 distributed.judge_backward, "x"),
}

(
    test_right_answer_passes_every_case,
    test_each_known_variant_is_named,
    test_unrelated_error_gets_largest_difference_and_index,
) = family_tests(FAMILIES)

(
    test_the_solution_passes_every_part,
    test_the_untouched_stub_fails_every_part,
    test_submission_loses_exactly_its_parts,
    test_judges_fail_cleanly_on_malformed_outputs,
) = notebook_tests(ASSIGNMENT)


# --------------------------------------------------------------------------- named mistakes

# Each named mistake as a student writes it (a corpus submission), and the id its part names.
NAMED = [
    ("unweighted_means", "07_distributed-merge", "unweighted_group_means"),
    ("no_between_term", "07_distributed-merge", "no_between_group_term"),
    ("between_without_counts", "07_distributed-merge", "between_term_without_counts"),
    ("unbiased_variance", "07_distributed-forward", "unbiased_variance"),
    ("merged_variances", "07_distributed-forward", "merged_variances"),
    ("local_statistics", "07_distributed-forward", "local_statistics"),
    ("local_m_in_backward", "07_distributed-backward", "local_m_in_backward"),
    ("backward_not_all_reduced", "07_distributed-backward", "backward_not_all_reduced"),
]
SUBMISSIONS = {s.name: s for s in load_submissions(ASSIGNMENT)}


@pytest.mark.parametrize(("submission", "part_id", "mistake"), NAMED, ids=[n[0] for n in NAMED])
def test_each_named_mistake_written_by_hand_is_named(submission: str, part_id: str,
                                                     mistake: str) -> None:
    namespace = solution_namespace(ASSIGNMENT, SUBMISSIONS[submission].overrides)
    part = PARTS[part_id]
    mistakes = {run_case(part, namespace[part.target], case).mistake for case in part.cases()}
    assert mistake in mistakes, mistakes


@pytest.mark.parametrize("part_id", ["07_distributed-merge", "07_distributed-merge_hidden"])
def test_naive_merge_fails_the_float32_cases_far_from_zero(part_id: str) -> None:
    """The corpus's M2 = sum(x^2) - m mu^2 merge (in the data's dtype) passes the float64
    cases and fails exactly the float32 ones, whose means lie ~1000 spreads from zero."""
    naive_merge = solution_namespace(ASSIGNMENT, SUBMISSIONS["naive_merge"].overrides)
    part = PARTS[part_id]
    for case in part.cases():
        verdict = run_case(part, naive_merge["merge_batch_stats"], case)
        far_from_zero = np.asarray(case["mean"]).dtype == np.float32
        assert verdict.passed != far_from_zero, (case["label"], verdict)
        if far_from_zero:
            assert "`m2` is wrong" in verdict.message


def test_a_wrong_count_is_reported() -> None:
    def merge_counting_groups(count, mean, m2):
        _, merged_mean, merged_m2 = cpu.merge_batch_stats(count, mean, m2)
        return len(count), merged_mean, merged_m2

    case = PARTS["07_distributed-merge"].cases()[0]
    outputs = distributed.run_merge(merge_counting_groups, case)
    verdict = distributed.judge_merge(case, outputs)
    assert not verdict.passed and "total number of values, 12" in verdict.message


def test_a_wrong_number_of_rank_outputs_is_reported() -> None:
    namespace = solution_namespace(ASSIGNMENT)

    def forward_dropping_a_rank(x_groups, gamma, beta, eps=1e-5):
        out_groups, caches = namespace["sync_batchnorm_forward"](x_groups, gamma, beta, eps)
        return out_groups[:-1], caches

    part = PARTS["07_distributed-forward"]
    verdict = run_case(part, forward_dropping_a_rank, part.cases()[0])
    assert "list of 3 arrays (one per rank)" in verdict.message


@pytest.mark.parametrize("case", distributed.sync_cases() + distributed.sync_cases_hidden(),
                         ids=lambda case: case["label"])
def test_the_ground_truth_is_torch_batch_norm_over_the_whole_batch(case: dict) -> None:
    """What the forward and backward parts compare with equals torch's BN (training mode,
    autograd) over the concatenated batch, both in float64: agreement to ~1e-15 expected;
    1e-10 is a wide margin."""
    import torch

    x = torch.tensor(np.asarray(case["x"], np.float64), requires_grad=True)
    gamma, beta = (torch.tensor(np.asarray(case[n], np.float64), requires_grad=True)
                   for n in ("gamma", "beta"))
    out = torch.nn.functional.batch_norm(x, None, None, gamma, beta, training=True,
                                         eps=case["eps"])
    out.backward(torch.tensor(np.asarray(case["dout"], np.float64)))
    expected = _backward_expected(case)
    for name, got in (("out", out), ("dx", x.grad), ("dgamma", gamma.grad), ("dbeta", beta.grad)):
        np.testing.assert_allclose(expected[name], got.detach().numpy(), rtol=1e-10, atol=1e-10,
                                   err_msg=name)


def test_the_merge_ground_truth_equals_the_statistics_of_the_concatenated_data() -> None:
    """cpu.merge_batch_stats (the merge part's ground truth) on groups of raw float64 data,
    an empty and a single-value group among them, against np.mean and the two-pass M2 of all
    the values at once: ~1e-13 expected, 1e-10 a wide margin."""
    rng = np.random.default_rng(7)
    groups = [rng.normal(5.0, 2.0, size=(size, 3)) for size in (4, 0, 1, 9)]
    count = np.array([len(g) for g in groups])
    means = np.stack([g.mean(axis=0) if len(g) else np.zeros(3) for g in groups])
    m2 = np.stack([((g - g.mean(axis=0)) ** 2).sum(axis=0) if len(g) else np.zeros(3)
                   for g in groups])
    total, mean, merged_m2 = cpu.merge_batch_stats(count, means, m2)
    values = np.concatenate(groups)
    assert total == len(values)
    np.testing.assert_allclose(mean, values.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(merged_m2, ((values - values.mean(axis=0)) ** 2).sum(axis=0),
                               rtol=1e-10)
