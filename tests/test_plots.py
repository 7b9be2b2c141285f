"""Tests of bncourse.plots: each helper draws what it is given, and rejects bad input."""

import warnings

import matplotlib

matplotlib.use("Agg")  # headless: CI has no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bncourse import plots  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    with matplotlib.rc_context():  # use_book_style's settings (and figure hook) end with the test
        yield
    plt.close("all")


def test_use_book_style_sets_the_colour_cycle_and_grid():
    matplotlib.rcdefaults()
    plots.use_book_style()
    cycle = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    assert [c.lower() for c in cycle] == [c.lower() for c in plots.BOOK_COLORS]
    assert matplotlib.rcParams["axes.grid"] is True


def test_depth_colors_runs_light_to_dark():
    colors = plots.depth_colors(5)
    assert len(colors) == 5
    luminance = [0.299 * r + 0.587 * g + 0.114 * b for r, g, b, _ in colors]
    assert all(a > b for a, b in zip(luminance, luminance[1:], strict=False))
    with pytest.raises(ValueError, match="n_layers"):
        plots.depth_colors(0)


def test_plot_layer_stats_draws_one_line_per_label_at_layer_indices():
    stats = {"small": [1.0, 0.5, 0.25], "xavier": [1.0, 0.9, 0.8]}
    ax = plots.plot_layer_stats(stats, logy=True, title="t", first_layer=2)
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["small", "xavier"]
    np.testing.assert_array_equal(lines[0].get_xdata(), [2, 3, 4])
    np.testing.assert_array_equal(lines[0].get_ydata(), stats["small"])
    assert ax.get_yscale() == "log"
    assert ax.get_title() == "t"


def test_plot_layer_stats_rejects_bad_input():
    with pytest.raises(ValueError, match="stats"):
        plots.plot_layer_stats({})
    with pytest.raises(ValueError, match=r"stats\['a'\]"):
        plots.plot_layer_stats({"a": np.zeros((2, 2))})


def test_plot_layer_histograms_has_one_histogram_per_layer_with_unit_area():
    rng = np.random.default_rng(0)
    values = [rng.normal(size=1000) * s for s in (1.0, 0.5, 0.1)]
    ax = plots.plot_layer_histograms(values, bins=30)
    assert len(ax.patches) == 3
    # density=True over the shared range: each outline's peak is the peak of the
    # density histogram NumPy computes for that layer with the same bins.
    low = min(v.min() for v in values)
    high = max(v.max() for v in values)
    for patch, layer_values in zip(ax.patches, values, strict=True):
        expected, _ = np.histogram(layer_values, bins=30, range=(low, high), density=True)
        assert patch.get_xy()[:, 1].max() == pytest.approx(expected.max())
    with pytest.raises(ValueError, match="values_per_layer"):
        plots.plot_layer_histograms([])


def test_plot_curves_uses_given_x_and_checks_its_length():
    ax = plots.plot_curves({"a": [3.0, 2.0, 1.0]}, x=[1, 10, 100], logx=True)
    np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), [1, 10, 100])
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "10", "100"]
    with pytest.raises(ValueError, match="x: expected 3"):
        plots.plot_curves({"a": [3.0, 2.0, 1.0]}, x=[1, 2])


def test_plot_point_clouds_has_equal_shared_axes_and_all_points():
    rng = np.random.default_rng(0)
    clouds = {"raw": rng.normal(size=(50, 2)) + 3.0, "centred": rng.normal(size=(50, 2))}
    fig = plots.plot_point_clouds(clouds)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["raw", "centred"]
    limit = 1.05 * max(np.abs(c).max() for c in clouds.values())
    for ax, points in zip(axes, clouds.values(), strict=True):
        assert ax.get_xlim() == pytest.approx((-limit, limit))
        assert ax.get_ylim() == pytest.approx((-limit, limit))
        np.testing.assert_array_equal(ax.collections[0].get_offsets(), points)
    with pytest.raises(ValueError, match=r"clouds\['bad'\]"):
        plots.plot_point_clouds({"bad": np.zeros((5, 3))})


def test_book_style_renders_at_150_dpi_and_warns_on_a_figure_too_wide_or_too_crowded():
    plots.use_book_style()
    assert matplotlib.rcParams["figure.dpi"] >= 150  # the inline backend renders at figure.dpi
    crowded, _ = plt.subplots(1, 3, figsize=(7, 3))
    wide, _ = plt.subplots(1, 2, figsize=(13, 3))
    fine, _ = plt.subplots(2, 2, figsize=(7, 5))
    with pytest.warns(plots.BookFigureWarning, match="3 panels in one row"):
        crowded.canvas.draw()
    with pytest.warns(plots.BookFigureWarning, match="13.00 in wide"):
        wide.canvas.draw()
    with warnings.catch_warnings():
        warnings.simplefilter("error", plots.BookFigureWarning)
        fine.canvas.draw()  # two rows of two panels are allowed
    plt.close("all")


def test_a_colour_bar_is_not_counted_as_a_panel():
    fig, axes = plt.subplots(1, 2, figsize=(7, 3))
    fig.colorbar(axes[0].imshow(np.eye(3)), ax=axes)
    fig.canvas.draw()
    assert plots.panels_per_row(fig) == 2
    plt.close(fig)


def test_plot_point_clouds_puts_at_most_two_panels_in_a_row():
    clouds = {name: np.random.default_rng(0).normal(size=(20, 2)) for name in "abcde"}
    fig = plots.plot_point_clouds(clouds)
    fig.canvas.draw()
    assert plots.panels_per_row(fig) == 2
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == list("abcde")
    assert plots.figure_problems(fig) == []
    plt.close(fig)
