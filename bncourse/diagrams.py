"""Diagrams drawn with matplotlib for the book (no external images).

``draw_bn_graph`` draws the computational graph of the batch normalizing
transform for one channel, with the name each gradient has in the code.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

# node name -> (x, y, forward label, gradient name in the code)
BN_GRAPH_NODES: dict[str, tuple[float, float, str, str]] = {
    "x": (0.0, 0.5, r"$x_i$", "dx"),
    "mu": (1.6, 0.88, r"$\mu_\mathcal{B}$", "dmu"),
    "var": (3.2, 0.88, r"$\sigma^2_\mathcal{B}$", "dvar"),
    "xhat": (4.6, 0.5, r"$\hat{x}_i$", "dxhat"),
    "gamma": (4.6, 0.08, r"$\gamma$", "dgamma"),
    "beta": (7.0, 0.08, r"$\beta$", "dbeta"),
    "y": (6.0, 0.5, r"$y_i$", "dout"),
    "loss": (7.4, 0.5, r"$\ell$", ""),
}

# forward edges (parent -> child): every path the chain rule must sum over
BN_GRAPH_EDGES: list[tuple[str, str]] = [
    ("x", "mu"),
    ("x", "var"),
    ("mu", "var"),
    ("x", "xhat"),
    ("mu", "xhat"),
    ("var", "xhat"),
    ("xhat", "y"),
    ("gamma", "y"),
    ("beta", "y"),
    ("y", "loss"),
]


def draw_bn_graph(ax: Axes | None = None) -> Figure:
    """Draw the BN computational graph (forward edges in black) on ``ax``.

    Each node shows the quantity it computes and, in red below it, the name of
    ``dl/d(quantity)`` in the code, the order the backward pass fills them in
    being right to left. Returns the figure holding ``ax``.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.4))
    for parent, child in BN_GRAPH_EDGES:
        x0, y0 = BN_GRAPH_NODES[parent][:2]
        x1, y1 = BN_GRAPH_NODES[child][:2]
        # a slight bend keeps the three edges into x-hat from hiding one another
        bend = 0.15 if (parent, child) in {("x", "var"), ("mu", "xhat")} else 0.0
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops={
                "arrowstyle": "-|>",
                "color": "0.25",
                "lw": 1.3,
                "shrinkA": 17,
                "shrinkB": 17,
                "connectionstyle": f"arc3,rad={bend}",
            },
        )
    for x, y, label, grad_name in BN_GRAPH_NODES.values():
        ax.text(
            x, y, label, ha="center", va="center", fontsize=15,
            bbox={"boxstyle": "round,pad=0.45", "facecolor": "#e8f0fa", "edgecolor": "#3a6ea5"},
        )
        if grad_name:
            ax.text(x, y - 0.17, grad_name, ha="center", va="center", fontsize=10,
                    color="#b22222", family="monospace")
    ax.set_xlim(-0.5, 7.9)
    ax.set_ylim(-0.2, 1.08)
    ax.axis("off")
    ax.set_title("Forward graph of BN for one channel (red: gradient names in the code)")
    return ax.figure
