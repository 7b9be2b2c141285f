"""Plotting helpers shared by the book's chapters.

Every chapter calls :func:`use_book_style` once, so all figures share one look
(sizes, fonts, grid, colour cycle) and one readable format: at least
:data:`BOOK_DPI` dots per inch, at most :data:`MAX_FIGURE_WIDTH_IN` inches wide
and at most :data:`MAX_PANELS_PER_ROW` panels side by side, so that tick labels
stay legible when the column shrinks the image. A figure that breaks the last
two rules draws with a :class:`BookFigureWarning`, which the book's tests turn
into a failure. The other helpers draw the plots that
recur across chapters; each takes an optional ``ax`` and returns the axes (or
the figure) it drew on, so a chapter can add titles or combine panels.

Signatures here are stable: other chapters depend on them.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

#: Colour-blind-safe cycle (Okabe & Ito), used for every line and scatter plot.
BOOK_COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]

#: Colour map for quantities ordered by depth (layer 1 light, last layer dark).
DEPTH_CMAP = "viridis"

#: Resolution of the book's figures; the inline backend renders at ``figure.dpi``.
BOOK_DPI = 150
#: Widest figure the book's text column shows without shrinking labels below ~8 px.
MAX_FIGURE_WIDTH_IN = 7.5
#: Panels side by side; more make each panel too narrow for its tick labels.
MAX_PANELS_PER_ROW = 2


class BookFigureWarning(UserWarning):
    """A figure breaks the book's size rules (too wide, or too many panels in a row)."""


def use_book_style() -> None:
    """Set matplotlib's defaults to the book's style (call once per chapter).

    PNG output at a resolution that stays sharp in the HTML book, a light grid,
    readable font sizes and the colour-blind-safe cycle :data:`BOOK_COLORS`.
    """
    mpl.rcParams.update(
        {
            "figure.figsize": (7.0, 4.0),
            "figure.dpi": BOOK_DPI,
            "savefig.dpi": BOOK_DPI,
            "figure.hooks": ["bncourse.plots:watch_figure"],
            "figure.constrained_layout.use": True,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 11,
            "axes.labelsize": 10,
            "legend.fontsize": 9,
            "legend.frameon": False,
            "xtick.labelsize": 9,
            "ytick.labelsize": 9,
            "lines.linewidth": 1.8,
            "axes.prop_cycle": mpl.cycler(color=BOOK_COLORS),
            "image.cmap": DEPTH_CMAP,
        }
    )
    try:  # PNG in notebooks (the book must not contain SVG/JS widgets)
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png")
    except ImportError:  # outside Jupyter there is nothing to configure
        pass
    warnings.simplefilter("always", BookFigureWarning)  # one warning per offending figure


def panels_per_row(fig: Figure) -> int:
    """The largest number of panels side by side in ``fig`` (colour bars not counted).

    Two panels are in one row when their vertical extents overlap by more than
    half the shorter one; positions are read after layout, so call it on a drawn figure.
    """
    boxes = [
        ax.get_position()
        for ax in fig.axes
        if ax.get_visible() and getattr(ax, "_colorbar", None) is None
    ]
    most = 0
    for box in boxes:
        row = [
            other
            for other in boxes
            if min(box.y1, other.y1) - max(box.y0, other.y0) > 0.5 * min(box.height, other.height)
        ]
        most = max(most, len(row))
    return most


def figure_problems(fig: Figure) -> list[str]:
    """What breaks the book's size rules in ``fig`` (empty when nothing does)."""
    problems = []
    width = fig.get_figwidth()
    if width > MAX_FIGURE_WIDTH_IN + 1e-9:
        problems.append(f"{width:.2f} in wide (at most {MAX_FIGURE_WIDTH_IN} in)")
    panels = panels_per_row(fig)
    if panels > MAX_PANELS_PER_ROW:
        problems.append(f"{panels} panels in one row (at most {MAX_PANELS_PER_ROW})")
    return problems


def watch_figure(fig: Figure) -> None:
    """matplotlib figure hook: warn once, when ``fig`` is drawn, if it breaks the size rules."""

    def check(event) -> None:
        if getattr(fig, "_bncourse_checked", False):
            return
        fig._bncourse_checked = True
        problems = figure_problems(fig)
        if problems:
            title = fig.get_suptitle() or next((a.get_title() for a in fig.axes if a.get_title()), "")
            # warn_explicit: the warning would otherwise name a file deep inside matplotlib
            warnings.warn_explicit(
                f"figure {title!r}: " + "; ".join(problems),
                BookFigureWarning,
                filename="bncourse.plots",
                lineno=0,
            )

    fig.canvas.mpl_connect("draw_event", check)


def depth_colors(n_layers: int) -> list[tuple[float, float, float, float]]:
    """Return ``n_layers`` colours from :data:`DEPTH_CMAP`, light (first) to dark (last)."""
    if n_layers < 1:
        raise ValueError(f"n_layers: expected a positive integer, got {n_layers!r}")
    cmap = mpl.colormaps[DEPTH_CMAP]
    # Reversed and stopping short of the yellow end, which is unreadable on white.
    return [cmap(v) for v in np.linspace(0.85, 0.0, n_layers)]


def _get_ax(ax: Axes | None) -> Axes:
    return plt.figure().add_subplot() if ax is None else ax


def _labelled_series(argument: str, series: Mapping[str, Sequence[float]]) -> list[tuple[str, np.ndarray]]:
    """The ``(label, values as a float array)`` pairs of a non-empty mapping named ``argument``."""
    if not series:
        raise ValueError(f"{argument}: expected at least one labelled sequence, got an empty mapping")
    return [(label, np.asarray(values, dtype=float)) for label, values in series.items()]


def _finish_legend_axes(ax: Axes, xlabel: str, ylabel: str, title: str | None, logy: bool) -> Axes:
    """Label a plot of labelled lines: y scale, axis labels, optional title, legend."""
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend()
    return ax


def plot_layer_stats(
    stats: Mapping[str, Sequence[float]],
    *,
    ax: Axes | None = None,
    ylabel: str = "standard deviation",
    title: str | None = None,
    logy: bool = False,
    first_layer: int = 1,
) -> Axes:
    """Plot one statistic against layer index, one line per configuration.

    Inputs:
    - stats: maps a label (e.g. an initialisation name) to a sequence of L
      values, the statistic at layers ``first_layer .. first_layer + L - 1``.
    - ax: axes to draw on; a new figure when None.
    - ylabel, title: axis label and title.
    - logy: logarithmic y axis (use it when values span orders of magnitude).
    - first_layer: index of the first value's layer.

    Returns the axes.
    """
    ax = _get_ax(ax)
    for label, values in _labelled_series("stats", stats):
        if values.ndim != 1:
            raise ValueError(
                f"stats[{label!r}]: expected a 1-D sequence of per-layer values, "
                f"got shape {values.shape}"
            )
        layers = np.arange(first_layer, first_layer + len(values))
        ax.plot(layers, values, marker="o", markersize=4, label=label)
    ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
    return _finish_legend_axes(ax, "layer", ylabel, title, logy)


def plot_layer_histograms(
    values_per_layer: Sequence[np.ndarray],
    *,
    ax: Axes | None = None,
    bins: int = 60,
    value_range: tuple[float, float] | None = None,
    xlabel: str = "value",
    title: str | None = None,
    legend: bool = True,
) -> Axes:
    """Overlay the histogram of each layer's values, coloured by depth.

    Inputs:
    - values_per_layer: L arrays of any shape (flattened), layer 1 first.
    - ax: axes to draw on; a new figure when None.
    - bins: number of bins, shared by all layers.
    - value_range: (low, high) of the bins; the pooled range of all values when None.
    - xlabel, title: axis label and title.
    - legend: label the first and last layers.

    The y axis is a density, so layers with different counts compare directly.
    Returns the axes.
    """
    if len(values_per_layer) == 0:
        raise ValueError("values_per_layer: expected at least one array, got none")
    ax = _get_ax(ax)
    flat = [np.asarray(v, dtype=float).ravel() for v in values_per_layer]
    if value_range is None:
        low = min(v.min() for v in flat)
        high = max(v.max() for v in flat)
        value_range = (low, high) if high > low else (low - 0.5, high + 0.5)
    colors = depth_colors(len(flat))
    for i, (values, color) in enumerate(zip(flat, colors, strict=True)):
        label = f"layer {i + 1}" if legend and i in (0, len(flat) - 1) else None
        ax.hist(values, bins=bins, range=value_range, density=True, histtype="step",
                color=color, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    if title:
        ax.set_title(title)
    if legend:
        ax.legend()
    return ax


def plot_curves(
    curves: Mapping[str, Sequence[float]],
    *,
    ax: Axes | None = None,
    x: Sequence[float] | None = None,
    xlabel: str = "step",
    ylabel: str = "loss",
    title: str | None = None,
    logx: bool = False,
    logy: bool = False,
) -> Axes:
    """Plot several curves (e.g. training losses) on one axes, one per label.

    Inputs:
    - curves: maps a label to a sequence of y values.
    - x: shared x values; ``0, 1, 2, ...`` when None (each curve its own length).
    - xlabel, ylabel, title, logx, logy: axis labels, title and scales.

    Returns the axes.
    """
    ax = _get_ax(ax)
    for label, values in _labelled_series("curves", curves):
        xs = np.arange(len(values)) if x is None else np.asarray(x, dtype=float)
        if xs.shape != values.shape:
            raise ValueError(
                f"x: expected {values.shape[0]} values to match curves[{label!r}], "
                f"got {xs.shape[0]}"
            )
        ax.plot(xs, values, label=label)
    if logx:
        ax.set_xscale("log")
        if x is not None and len(x) <= 12:
            # Label the measured x values themselves (e.g. batch sizes), not powers of ten.
            ax.set_xticks(np.asarray(x, dtype=float), labels=[f"{v:g}" for v in x])
            ax.xaxis.set_minor_formatter(mpl.ticker.NullFormatter())
    return _finish_legend_axes(ax, xlabel, ylabel, title, logy)


def plot_point_clouds(
    clouds: Mapping[str, np.ndarray],
    *,
    limit: float | None = None,
    panel_size: float = 2.6,
    point_size: float = 4.0,
) -> Figure:
    """Scatter several 2-D point clouds, two per row, with equal, shared axes.

    Inputs:
    - clouds: maps a panel title to an ``(n, 2)`` array.
    - limit: every panel shows ``[-limit, limit]`` on both axes; when None, the
      smallest symmetric square that holds every point (so panels compare).
    - panel_size: width of one panel in inches (two panels must fit in 7.5 in).
    - point_size: marker area.

    Each panel marks the origin and draws the cloud's two principal axes scaled
    by their standard deviations, so a whitened cloud shows two equal axes.
    Returns the figure.
    """
    if not clouds:
        raise ValueError("clouds: expected at least one labelled (n, 2) array, got none")
    arrays = {}
    for title, points in clouds.items():
        points = np.asarray(points, dtype=float)
        if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] < 2:
            raise ValueError(
                f"clouds[{title!r}]: expected an (n, 2) array with n >= 2, got shape {points.shape}"
            )
        arrays[title] = points
    if limit is None:
        limit = 1.05 * max(np.abs(p).max() for p in arrays.values())
    columns = min(MAX_PANELS_PER_ROW, len(arrays))
    rows = -(-len(arrays) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(panel_size * columns, (panel_size + 0.4) * rows),
                             squeeze=False, sharex=True, sharey=True)
    for ax in axes.flat[len(arrays):]:
        ax.set_visible(False)  # an odd number of clouds leaves the last slot empty
    for ax, (title, points) in zip(axes.flat, arrays.items(), strict=False):
        ax.scatter(points[:, 0], points[:, 1], s=point_size, alpha=0.5, color=BOOK_COLORS[0],
                   linewidths=0)
        ax.axhline(0.0, color="0.6", linewidth=0.8)
        ax.axvline(0.0, color="0.6", linewidth=0.8)
        center = points.mean(axis=0)
        eigvals, eigvecs = np.linalg.eigh(np.cov(points, rowvar=False, bias=True))
        for std, direction in zip(np.sqrt(np.clip(eigvals, 0.0, None)), eigvecs.T, strict=True):
            end = center + 2.0 * std * direction
            ax.plot([center[0], end[0]], [center[1], end[1]], color=BOOK_COLORS[1], linewidth=2)
        ax.set_xlim(-limit, limit)
        ax.set_ylim(-limit, limit)
        ax.set_aspect("equal")
        ax.set_title(title)
    for column in axes.T:  # label the lowest visible panel of each column
        lowest = [ax for ax in column if ax.get_visible()][-1]
        lowest.xaxis.set_tick_params(labelbottom=True)
        lowest.set_xlabel("feature 1")
    for ax in axes[:, 0]:
        ax.set_ylabel("feature 2")
    return fig
