"""``bncourse.checks.shortcuts``: the source scan and the run-time tripwire."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from judging import correct_forward

from bncourse import cpu, data
from bncourse.checks import PARTS
from bncourse.checks.shortcuts import find_shortcuts, mentions_reference, module_kind
from bncourse.testing import check, run_case

SHORTCUTS = {
    "torch_functional": (
        "def f(x, g, b):\n    return torch.nn.functional.batch_norm(x, None, None, g, b, True)\n"
    ),
    "F_alias": "def f(x, g, b):\n    return F.layer_norm(x, x.shape[1:])\n",
    "torch_batch_norm": (
        "def f(x):\n    return torch.batch_norm(x, None, None, None, None, True, 0.1, 1e-5, False)\n"
    ),
    "module": "class L:\n    def __init__(self):\n        self.bn = nn.BatchNorm1d(3)\n",
    "bncourse_import": (
        "def f(x, g, b):\n    from bncourse.cpu import batchnorm_forward\n"
        "    return batchnorm_forward(x, g, b)\n"
    ),
    "bncourse_attr": "def f(x, g, b):\n    return bncourse.cpu.batchnorm_forward(x, g, b)\n",
    "sklearn": (
        "def f(x):\n    from sklearn.preprocessing import StandardScaler\n"
        "    return StandardScaler().fit_transform(x)\n"
    ),
    "sklearn_scale": "def f(x):\n    import sklearn.preprocessing as p\n    return p.scale(x)\n",
    "zscore": "def f(x):\n    from scipy.stats import zscore\n    return zscore(x)\n",
    "group_norm": "    def forward(self, x):\n        return torch.group_norm(x, 2)\n",
}
HONEST = {
    "numpy": (
        "def batchnorm_forward(x, gamma, beta, eps=1e-5):\n    mu = x.mean(axis=0)\n"
        "    return gamma * (x - mu) / np.sqrt(x.var(axis=0) + eps) + beta, None\n"
    ),
    "own_class": (
        "class BatchNorm1d(torch.nn.Module):\n    def __init__(self, n):\n"
        "        super(BatchNorm1d, self).__init__()\n"
        "        self.weight = torch.nn.Parameter(torch.ones(n))\n"
    ),
    "torch_ops": (
        "def f(x):\n    var, mean = torch.var_mean(x, dim=0, unbiased=False)\n"
        "    return (x - mean) * torch.rsqrt(var + 1e-5)\n"
    ),
    "syntax_error": "def f(x:\n",
}


@pytest.mark.parametrize("name", SHORTCUTS)
def test_find_shortcuts_flags_ready_made_normalisation(name):
    assert find_shortcuts(SHORTCUTS[name]) is not None


@pytest.mark.parametrize("name", HONEST)
def test_find_shortcuts_accepts_honest_code(name):
    assert find_shortcuts(HONEST[name]) is None


def test_tripwire_catches_a_shortcut_the_source_scan_cannot_see():
    normalise = torch.nn.functional.batch_norm  # bound outside the function: no trace in it

    def batchnorm_forward(x, gamma, beta, eps=1e-5):
        out = normalise(torch.from_numpy(x), None, None, torch.from_numpy(gamma),
                        torch.from_numpy(beta), True, 0.1, eps)
        return out.numpy(), None

    part = PARTS["03_bn_transform-forward_2d"]
    assert find_shortcuts("def batchnorm_forward(x):\n    return normalise(x)\n") is None
    verdict = run_case(part, batchnorm_forward, part.cases()[0])
    assert verdict.mistake == "shortcut" and "torch.nn.functional.batch_norm" in verdict.message


def test_tripwire_catches_the_reference_called_through_an_alias():
    reference = cpu.batchnorm_forward

    def batchnorm_forward(x, gamma, beta, eps=1e-5):
        return reference(x, gamma, beta, eps)

    part = PARTS["03_bn_transform-forward_2d"]
    verdict = run_case(part, batchnorm_forward, part.cases()[0])
    assert verdict.mistake == "shortcut" and "bncourse.cpu" in verdict.message


def test_tripwire_ignores_course_helpers_but_not_the_reference_itself():
    def batchnorm_forward(x, gamma, beta, eps=1e-5):
        data.minibatches(x, x[:, 0], 2, np.random.default_rng(0))  # an allowed helper
        return correct_forward(x, gamma, beta, eps)

    part = PARTS["03_bn_transform-forward_2d"]
    assert run_case(part, batchnorm_forward, part.cases()[0]).passed
    # The reference handed over as the student's function: its call comes from the check
    # module, which is no helper.
    verdict = run_case(part, cpu.batchnorm_forward, part.cases()[0])
    assert verdict.mistake == "shortcut"
    with pytest.raises(AssertionError, match="not your own code"):
        check("03_bn_transform-forward_2d", cpu.batchnorm_forward)
    assert find_shortcuts("def f(x):\n    return bncourse.data.minibatches(x)\n") is None


def test_one_policy_for_the_scan_of_a_function_and_of_a_notebook():
    assert module_kind("bncourse.cpu") == module_kind("bncourse.checks.variants") == "reference"
    assert module_kind("sklearn.preprocessing.scale") == "ready_made"
    assert module_kind("bncourse") is module_kind("bncourse.data.load_digits") is None
    assert mentions_reference("import bncourse.gpu") and not mentions_reference("bncourse.plots")
    # The names the exercises' setup cells import may be imported again; their neighbours not.
    assert module_kind("bncourse.deepnet.init_mlp") is None
    assert module_kind("bncourse.deepnet.batchnorm_inference") == "reference"
    assert find_shortcuts("def train(x):\n    from bncourse.deepnet import init_mlp\n    return init_mlp(x)\n") is None
    assert find_shortcuts("def f(x):\n    from bncourse.deepnet import predict\n    return predict(x)\n")
