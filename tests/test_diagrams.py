"""Tests of bncourse.diagrams: the BN graph has the nodes and edges of Algorithm 1."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from bncourse.diagrams import BN_GRAPH_EDGES, BN_GRAPH_NODES, draw_bn_graph  # noqa: E402


def test_graph_has_every_dependence_of_the_forward_pass():
    edges = set(BN_GRAPH_EDGES)
    # x-hat depends on x, mu and sigma^2; sigma^2 on x and mu: the sums of the chain rule
    assert {("x", "xhat"), ("mu", "xhat"), ("var", "xhat"), ("x", "var"), ("mu", "var")} <= edges
    assert all(parent in BN_GRAPH_NODES and child in BN_GRAPH_NODES for parent, child in edges)


def test_drawing_shows_one_arrow_per_edge_and_every_label():
    fig = draw_bn_graph()
    ax = fig.axes[0]
    arrows = [t for t in ax.texts if getattr(t, "arrow_patch", None) is not None]
    assert len(arrows) == len(BN_GRAPH_EDGES)
    texts = {t.get_text() for t in ax.texts}
    for _, _, label, grad_name in BN_GRAPH_NODES.values():
        assert label in texts
        if grad_name:
            assert grad_name in texts
    plt.close(fig)
