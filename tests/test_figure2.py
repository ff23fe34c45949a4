"""Figure 2 is readable: one column per method family (ARGS, CD, best-of-N), vanilla against SRS with error bars,
the base policy as a band, no two error bars at the same x, legends outside the data."""

import csv
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from hf_stackshape.pipeline.sweep import plot_sweep, sweep_figure  # noqa: E402

CSV = Path(__file__).resolve().parents[1] / "examples" / "results" / "demo_results.csv"


def _demo_table():
    """The demo's stored results (7 methods x 3 weights + base), as the sweep's table rows."""
    rows = []
    with open(CSV, newline="") as f:
        for row in csv.DictReader(f):
            out = {}
            for key, value in row.items():
                if key in ("method", "decoder"):
                    out[key] = value
                else:
                    out[key] = float(value) if value not in ("", None) else None
            if out["method"] != "base":
                out["weight"] = float(out["weight"])
            rows.append(out)
    return rows


def test_one_column_per_family_with_legends_outside_and_no_hidden_bars():
    import matplotlib.pyplot as plt

    table = _demo_table()
    fig = sweep_figure(table)
    try:
        axes = fig.axes
        assert [ax.get_title() for ax in axes if ax.get_title()] == ["ARGS", "CD", "best-of-N"]
        assert len(axes) == 6
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in axes:
            # No two data points of one panel share an x (methods side by side at each weight).
            xs = [x for line in ax.lines if line.get_marker() in ("o", "s", "^", "D") for x in line.get_xdata()]
            assert len(xs) == len(set(xs)) and xs
            legend = ax.get_legend()
            if legend is not None:  # under the panel, not over the data
                assert legend.get_window_extent(renderer).y1 <= ax.get_window_extent(renderer).y0
        legends = [ax.get_legend() for ax in axes if ax.get_legend() is not None]
        assert len(legends) == 3
        labels = [{t.get_text() for t in legend.get_texts()} for legend in legends]
        assert {"vanilla-args", "srs-args", "base policy"} <= labels[0]
        assert {"vanilla-cd", "srs-cd"} <= labels[1] and {"bon", "soft-bon", "srs-bon"} <= labels[2]
        # the base policy's interval is a shaded band in each reward panel
        assert all(any(p.get_alpha() == 0.15 for p in ax.patches) for ax in axes[:3])
    finally:
        plt.close(fig)


def test_plot_sweep_writes_a_png_of_the_families_present(tmp_path):
    table = [r for r in _demo_table() if r["method"] in ("base", "vanilla-args", "srs-args")]
    png = plot_sweep(table, tmp_path / "fig.png", title="only ARGS")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = sweep_figure(table)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["ARGS"]
    with pytest.raises(ValueError, match="no guided method"):
        sweep_figure([r for r in table if r["method"] == "base"])
