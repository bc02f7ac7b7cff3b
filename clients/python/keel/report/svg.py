"""The report's charts, written as inline SVG by hand: no plotting library, no script,
nothing fetched. Each chart is a function of plain data returning one ``<svg>`` element;
colours come from the page's CSS classes (``ref``, ``cur``, ``line-N``…)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from keel.report.data import Comparison, Group, Histogram, PerformanceWindow
from keel.report.text import count, esc, number, percent

WIDTH, HEIGHT = 520, 210
LEFT, RIGHT, TOP, BOTTOM = 44, 10, 22, 36
CHAR_WIDTH = 5.6  # of a 10px tick label, roughly
UNIT_METRICS = {"accuracy", "precision", "recall", "f1", "roc_auc", "selection_rate"}


def _f(value: float) -> str:
    return f"{value:.1f}"


def _svg(width: int, height: int, label: str, body: list[str]) -> str:
    return (
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{esc(label)}"><title>{esc(label)}</title>'
        + "".join(body)
        + "</svg>"
    )


def _text(x: float, y: float, content: str, anchor: str = "middle", cls: str = "tick") -> str:
    return (
        f'<text x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}" class="{cls}">{esc(content)}</text>'
    )


def _rect(x: float, y: float, w: float, h: float, cls: str, tip: str) -> str:
    return (
        f'<rect class="{cls}" x="{_f(x)}" y="{_f(y)}" width="{_f(w)}" height="{_f(h)}">'
        f"<title>{esc(tip)}</title></rect>"
    )


def _legend(items: Sequence[tuple[str, str]], x: float, y: float = 12) -> list[str]:
    parts = []
    for label, cls in items:
        parts.append(f'<rect class="{cls}" x="{_f(x)}" y="{_f(y - 8)}" width="10" height="10"/>')
        parts.append(_text(x + 14, y + 1, label, "start", "legend"))
        x += 24 + 7 * len(label)
    return parts


def _y_axis(top: float, bottom: float, peak: float, as_percent: bool) -> list[str]:
    parts = [
        f'<line class="axis" x1="{LEFT}" y1="{_f(bottom)}" x2="{WIDTH - RIGHT}" y2="{_f(bottom)}"/>'
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = bottom - fraction * (bottom - top)
        value = peak * fraction
        label = percent(value, 0) if as_percent else _compact(value)
        parts.append(
            f'<line class="grid" x1="{LEFT}" y1="{_f(y)}" x2="{WIDTH - RIGHT}" y2="{_f(y)}"/>'
        )
        parts.append(_text(LEFT - 4, y + 3, label, "end"))
    return parts


def _compact(value: float) -> str:
    """An axis figure short enough for the margin: 0.5, 12, 1.6k, 2.3M."""
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.2g}{suffix}"
    return number(value, 2)


def _shares(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def bin_labels(histogram: Histogram) -> list[str]:
    """A name per bin: the category, or the interval of a numeric bin."""
    if not histogram.numeric:
        return list(histogram.categories)
    edges = [number(e, 3) for e in histogram.edges]
    if not edges:
        return ["all values"]
    inner = [f"[{a}, {b})" for a, b in zip(edges, edges[1:], strict=False)]
    return [f"< {edges[0]}", *inner, f"≥ {edges[-1]}"]


def distribution(histogram: Histogram, name: str) -> str:
    """Reference and current shares per bin, side by side."""
    reference = _shares(histogram.reference)
    current = _shares(histogram.current) if any(histogram.current) else []
    bins = len(reference)
    peak = max([*reference, *current, 0.01]) * 1.1
    bottom, top = HEIGHT - BOTTOM, TOP
    slot = (WIDTH - LEFT - RIGHT) / max(bins, 1)
    labels = bin_labels(histogram)
    bar = slot * (0.4 if current else 0.7)
    parts = _y_axis(top, bottom, peak, as_percent=True)
    for i, share in enumerate(reference):
        x = LEFT + i * slot + (slot - (2 * bar if current else bar)) / 2
        height = share / peak * (bottom - top)
        tip = f"{labels[i]}: reference {percent(share)} ({count(histogram.reference[i])} rows)"
        parts.append(_rect(x, bottom - height, bar, height, "ref", tip))
        if current:
            tip = f"{labels[i]}: current {percent(current[i])} ({count(histogram.current[i])} rows)"
            height = current[i] / peak * (bottom - top)
            parts.append(_rect(x + bar, bottom - height, bar, height, "cur", tip))
    parts.extend(_bin_ticks(histogram, labels, slot, bottom))
    legend = [("reference", "ref"), ("current", "cur")] if current else [("reference", "ref")]
    parts.extend(_legend(legend, WIDTH - RIGHT - (190 if current else 95)))
    what = "reference and current distribution" if current else "reference distribution"
    return _svg(WIDTH, HEIGHT, f"{name}: {what}", parts)


def _bin_ticks(histogram: Histogram, labels: list[str], slot: float, bottom: float) -> list[str]:
    parts = []
    if histogram.numeric:
        free_from = 0.0  # where the last label drawn ends: the next must start after it
        for i, edge in enumerate(histogram.edges):
            label, x = number(edge, 3), LEFT + (i + 1) * slot
            half = CHAR_WIDTH * len(label) / 2
            if x - half >= free_from:
                parts.append(_text(x, bottom + 14, label))
                free_from = x + half + 4
        return parts
    room = max(3, int(slot / 6.5))
    for i, label in enumerate(labels):
        short = label if len(label) <= room else label[: room - 1] + "…"
        parts.append(_text(LEFT + (i + 0.5) * slot, bottom + 14, short))
    return parts


def _time_ticks(series: Sequence[PerformanceWindow], slot: float, bottom: float) -> list[str]:
    span = (series[-1].end - series[0].start).total_seconds() if series else 0
    pattern = "%H:%M" if span <= 2 * 86400 else "%m-%d"
    every = max(1, len(series) // 6)
    parts = []
    for i, window in enumerate(series):
        if i % every == 0:
            parts.append(_text(LEFT + (i + 0.5) * slot, bottom + 14, _clock(window.start, pattern)))
    return parts


def _clock(moment: datetime, pattern: str) -> str:
    return moment.strftime(pattern)


def metric_lines(series: Sequence[PerformanceWindow], metrics: Sequence[str]) -> str:
    """Each metric per window as a line (broken where a window has no labels)."""
    values = [v for w in series for name, v in w.metrics.items() if name in metrics]
    unit = all(m in UNIT_METRICS for m in metrics)
    peak = 1.0 if unit else max([*values, 1e-9]) * 1.1
    bottom, top = HEIGHT - BOTTOM, TOP
    slot = (WIDTH - LEFT - RIGHT) / max(len(series), 1)
    parts = _y_axis(top, bottom, peak, as_percent=False)
    for n, metric in enumerate(metrics):
        path, points = [], []
        previous = False
        for i, window in enumerate(series):
            value = window.metrics.get(metric)
            if value is None:
                previous = False
                continue
            x, y = LEFT + (i + 0.5) * slot, bottom - max(value, 0.0) / peak * (bottom - top)
            path.append(f"{'L' if previous else 'M'}{_f(x)} {_f(y)}")
            tip = f"{metric} {number(value)} ({count(window.labeled_count)} labelled rows)"
            points.append(
                f'<circle class="dot line-{n}" cx="{_f(x)}" cy="{_f(y)}" r="3.5">'
                f"<title>{esc(tip)}</title></circle>"
            )
            previous = True
        if path:
            parts.append(f'<path class="line line-{n}" d="{" ".join(path)}"/>')
        parts.extend(points)
    parts.extend(_time_ticks(series, slot, bottom))
    parts.extend(_legend([(m, f"key line-{n}") for n, m in enumerate(metrics)], LEFT + 6))
    return _svg(WIDTH, HEIGHT, f"{', '.join(metrics)} per window", parts)


def volume_bars(series: Sequence[PerformanceWindow]) -> str:
    """Predictions and labelled predictions per window."""
    peak = max([w.prediction_count for w in series] + [1]) * 1.1
    bottom, top = HEIGHT - BOTTOM, TOP
    slot = (WIDTH - LEFT - RIGHT) / max(len(series), 1)
    parts = _y_axis(top, bottom, peak, as_percent=False)
    for i, window in enumerate(series):
        for value, cls, what, share in (
            (window.prediction_count, "ref", "predictions", 0.8),
            (window.labeled_count, "cur", "labelled", 0.4),
        ):
            x, width = LEFT + (i + 0.5 - share / 2) * slot, share * slot
            height = value / peak * (bottom - top)
            parts.append(_rect(x, bottom - height, width, height, cls, f"{count(value)} {what}"))
    parts.extend(_time_ticks(series, slot, bottom))
    parts.extend(_legend([("predictions", "ref"), ("labelled", "cur")], LEFT + 6))
    return _svg(WIDTH, HEIGHT, "predictions and labelled predictions per window", parts)


def selection_rates(groups: Sequence[Group], four_fifths: float, feature: str) -> str:
    """Selection rate per group, with the four-fifths line of the best included group."""
    row, label_width = 22, 150
    height = TOP + row * len(groups) + 24
    span = WIDTH - label_width - RIGHT
    best = max([g.selection_rate for g in groups if not g.excluded] + [0.0])
    parts = []
    for i, group in enumerate(groups):
        y = TOP + i * row
        cls = "grey" if group.excluded else ("bad" if group.adverse_impact else "ref")
        name = group.name if len(group.name) <= 24 else group.name[:23] + "…"
        parts.append(_text(label_width - 6, y + 14, name, "end"))
        tip = (
            f"{group.name}: selection rate {percent(group.selection_rate)}, "
            f"{count(group.row_count)} rows"
        )
        parts.append(_rect(label_width, y + 3, group.selection_rate * span, row - 6, cls, tip))
    line = label_width + best * four_fifths * span
    bottom = TOP + row * len(groups)
    parts.append(
        f'<line class="threshold" x1="{_f(line)}" y1="{TOP - 4}" x2="{_f(line)}" y2="{bottom}"/>'
    )
    parts.append(_text(line, bottom + 14, f"{four_fifths:g} × best rate", "middle", "legend"))
    parts.extend(_legend([("selection rate", "ref"), ("adverse impact", "bad")], label_width, 12))
    return _svg(WIDTH, height, f"{feature}: selection rate per group", parts)


def interval(comparison: Comparison) -> str:
    """The difference (candidate − baseline) and its interval, around zero."""
    width, height = 220, 26
    low, high = comparison.difference_interval.lower, comparison.difference_interval.upper
    reach = max(abs(low), abs(high), abs(comparison.difference), 1e-9) * 1.15
    middle = width / 2

    def at(value: float) -> float:
        return middle + value / reach * (width / 2 - 6)

    tip = (
        f"{comparison.metric}: difference {number(comparison.difference)} "
        f"[{number(low)}, {number(high)}]"
    )
    parts = [
        f'<line class="axis" x1="{_f(middle)}" y1="2" x2="{_f(middle)}" y2="{height - 2}"/>',
        f'<line class="ci" x1="{_f(at(low))}" y1="13" x2="{_f(at(high))}" y2="13"/>',
        f'<circle class="dot line-0" cx="{_f(at(comparison.difference))}" cy="13" r="4">'
        f"<title>{esc(tip)}</title></circle>",
    ]
    return _svg(width, height, tip, parts)
