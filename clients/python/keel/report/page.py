"""The report as one self-contained HTML page: inline CSS, inline SVG charts, no script,
no external resource. Every text from the services is escaped (``text.esc``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from keel.report import svg
from keel.report.data import (
    ColumnDrift,
    Comparison,
    DriftSection,
    FairnessSection,
    FeatureFairness,
    Group,
    Objective,
    PerformanceSection,
    Report,
    VariantSection,
)
from keel.report.style import CSS
from keel.report.text import count, duration, esc, number, percent, when

PLOTTED = {
    "regression": ("rmse", "mae"),
}
PLOTTED_CLASSIFIER = ("accuracy", "f1", "roc_auc")


def render(report: Report) -> str:
    """The whole page."""
    head = report.header
    title = f"Keel report: {head.model}" + (f" version {head.version}" if head.version else "")
    body = [
        _header(report, title),
        _summary(report),
        _model(report),
        _drift(report.drift),
        _performance(report.performance),
        _fairness(report.fairness),
        _variants(report.variants),
        "<footer>Written by <code>keel report</code>. This file is self-contained: it needs no "
        "network to open.</footer>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _table(rows: Iterable[Sequence[str]], header: Sequence[str] = ()) -> str:
    """A table of cells that are already HTML (escape text before passing it)."""
    head = "<tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _facts(rows: Iterable[tuple[str, str]]) -> str:
    """A table of label/value rows (plain text, escaped here)."""
    body = "".join(f'<tr><th scope="row">{esc(k)}</th><td>{esc(v)}</td></tr>' for k, v in rows)
    return f'<table class="kv">{body}</table>'


def _badge(text: str, cls: str) -> str:
    return f'<span class="verdict {cls}">{esc(text)}</span>'


def _note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def _header(report: Report, title: str) -> str:
    return (
        f"<header><h1>{esc(title)}</h1>"
        f'<p class="sub">From {esc(when(report.start))} to {esc(when(report.end))} · '
        f"generated {esc(when(report.generated))}</p></header>"
    )


def _card(label: str, value: str) -> str:
    return f'<div class="card"><span class="muted">{esc(label)}</span><b>{value}</b></div>'


def _summary(report: Report) -> str:
    drift = report.drift
    if not report.has_traffic:
        verdict = _badge("no traffic", "na")
    elif drift.dataset_drifted:
        verdict = _badge("dataset drift", "drift")
    else:
        verdict = _badge("no dataset drift", "ok")
    cards = [
        _card("predictions in range", esc(count(drift.row_count))),
        _card(
            "drifted features",
            esc(f"{drift.drifted_feature_count} of {drift.evaluated_feature_count}")
            if report.has_traffic
            else "—",
        ),
        _card("drift verdict", verdict),
    ]
    objectives = (report.performance.objectives if report.performance else ()) + (
        report.fairness.objectives
    )
    if objectives:
        failed = sum(not o.passed for o in objectives)
        cards.append(_card("objectives failing", esc(f"{failed} of {len(objectives)}")))
    return f'<section id="summary" class="cards">{"".join(cards)}</section>'


def _model(report: Report) -> str:
    head = report.header
    aliases = ", ".join(f"{a} → v{v}" for a, v in sorted(head.aliases.items())) or "none"
    rows = [
        ("Model", head.model),
        ("Description", head.description or "—"),
        ("Task", head.task),
        ("Owner team", head.owner_team or "—"),
        ("Version", f"{head.version} ({head.chosen_by})" if head.version else head.chosen_by),
        ("Status", head.status or "—"),
        ("Flavor", head.flavor or "—"),
        ("Author", head.author or "—"),
        ("Registered", when(head.created)),
        ("Aliases", aliases),
        ("Objectives", ", ".join(head.objectives) or "none declared"),
        ("Holdout metrics", _metrics_text(head.evaluation) or "—"),
    ]
    table = _facts(rows)
    return f'<section id="model"><h2>Model</h2>{table}</section>'


def _metrics_text(metrics: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {number(value)}" for name, value in metrics.items())


# Drift -------------------------------------------------------------------------------
def _drift(section: DriftSection) -> str:
    parts = ['<section id="drift"><h2>Distributions and drift</h2>']
    if section.note:
        parts.append(_note(section.note))
    if section.row_count:
        parts.append(
            f"<p>{esc(count(section.row_count))} predictions compared with the reference: "
            f"{section.drifted_feature_count} of {section.evaluated_feature_count} features "
            f"drifted ({esc(percent(section.drifted_share))}; dataset drift at "
            f"{esc(percent(section.drift_share_threshold, 0))} or more).</p>"
        )
    articles = [_column(i, column) for i, column in enumerate(section.columns)]
    parts.append(f'<div class="grid2">{"".join(articles)}</div></section>')
    return "".join(parts)


VERDICT_CLASS = {"drift": "drift", "no drift": "ok"}


def _column(index: int, column: ColumnDrift) -> str:
    kind = "numeric" if column.histogram.numeric else "categorical"
    title = (
        column.name
        if column.target in ("feature", column.name)
        else f"{column.name} ({column.target})"
    )
    facts = [f"{kind}", f"reference {count(column.reference_count)} rows"]
    if column.verdict != "no traffic":
        facts.append(f"current {count(column.current_count)} rows")
        if column.current_missing_count:
            facts.append(f"{count(column.current_missing_count)} missing")
    stats = ""
    if column.statistic is not None:
        rows = [
            ("method", column.method),
            ("statistic", number(column.statistic)),
            ("threshold", f"{number(column.threshold)} ({column.mode})"),
        ]
        if column.p_value is not None:
            rows.append(("p-value", number(column.p_value)))
        stats = _facts(rows)
    return (
        f'<article class="column" id="column-{index}" data-feature="{esc(column.name)}">'
        f"<h3>{esc(title)}{_badge(column.verdict, VERDICT_CLASS.get(column.verdict, 'na'))}</h3>"
        f'<p class="facts">{esc(" · ".join(facts))}</p>{stats}'
        f"{svg.distribution(column.histogram, column.name)}</article>"
    )


# Performance -------------------------------------------------------------------------
def _objectives(objectives: Sequence[Objective]) -> str:
    if not objectives:
        return ""
    rows = [
        (
            esc(o.text),
            esc(number(o.actual)),
            _badge("passed" if o.passed else "failed", "passed" if o.passed else "failed"),
            esc(o.message),
        )
        for o in objectives
    ]
    return "<h3>Objectives</h3>" + _table(rows, ("objective", "actual", "", ""))


def _performance(section: PerformanceSection | None) -> str:
    parts = ['<section id="performance"><h2>Performance over time</h2>']
    if section is None:
        parts.append(_note("No traffic yet: no predictions of this version in the range."))
        return "".join(parts) + "</section>"
    whole = section.whole
    coverage = percent(whole.labeled_count / max(whole.prediction_count, 1))
    rows = [
        ("predictions", count(whole.prediction_count)),
        ("labelled", f"{count(whole.labeled_count)} ({coverage})"),
        *((name, number(value)) for name, value in whole.metrics.items()),
    ]
    parts.append(f"<p>{esc(section.task)}, whole range:</p>")
    parts.append(_facts(rows))
    if not whole.labeled_count:
        parts.append(_note("No labels yet: metrics need ground truth sent as feedback."))
    parts.append(_objectives(section.objectives))
    parts.append(f"<h3>Per {esc(duration(section.window_seconds))}</h3>")
    charts = [svg.volume_bars(section.series)]
    plotted = PLOTTED.get(section.task, PLOTTED_CLASSIFIER)
    shown = [m for m in plotted if any(m in w.metrics for w in section.series)]
    if shown:
        charts.append(svg.metric_lines(section.series, shown))
    parts.append(f'<div class="grid2">{"".join(charts)}</div></section>')
    return "".join(parts)


# Fairness ----------------------------------------------------------------------------
def _fairness(section: FairnessSection) -> str:
    parts = ['<section id="fairness"><h2>Fairness by group</h2>']
    if section.note:
        parts.append(_note(section.note))
        return "".join(parts) + "</section>"
    parts.append(
        f"<p>{esc(count(section.row_count))} predictions, {esc(count(section.labeled_count))} "
        f"labelled; positive class {esc(section.positive_class or '—')}.</p>"
    )
    parts.extend(_feature_fairness(f, section.four_fifths_threshold) for f in section.features)
    parts.append(_objectives(section.objectives))
    return "".join(parts) + "</section>"


def _group_flag(group: Group) -> str:
    if group.excluded:
        return "excluded (too few rows)"
    return "adverse impact" if group.adverse_impact else ""


def _feature_fairness(feature: FeatureFairness, four_fifths: float) -> str:
    rule = "passed" if feature.four_fifths_passed else "failed"
    summary = (
        f"demographic parity difference {number(feature.demographic_parity_difference)}, "
        f"ratio {number(feature.demographic_parity_ratio)}, equalized odds difference "
        f"{number(feature.equalized_odds_difference)}"
    )
    rows = [
        (
            esc(g.name),
            esc(count(g.row_count)),
            esc(percent(g.selection_rate)),
            esc(number(g.selection_rate_ratio, 3)),
            esc(percent(g.true_positive_rate)),
            esc(percent(g.false_positive_rate)),
            _group_flag(g),
        )
        for g in feature.groups
    ]
    header = ("group", "rows", "selection rate", "ratio", "TPR", "FPR", "")
    return (
        f'<article class="fairness" data-feature="{esc(feature.feature)}">'
        f"<h3>{esc(feature.feature)}{_badge(f'four-fifths rule {rule}', rule)}</h3>"
        f'<p class="facts">{esc(summary)}</p>'
        f"{svg.selection_rates(feature.groups, four_fifths, feature.feature)}"
        f"{_table(rows, header)}</article>"
    )


# Variants ----------------------------------------------------------------------------
VERDICTS = {"candidate better": "better", "candidate worse": "worse"}
# Metrics that describe the predictions and are neither better nor worse when higher.
NO_DIRECTION = {"selection_rate", "mean_prediction"}


def _verdict(comparison: Comparison) -> str:
    verdict = comparison.verdict
    if comparison.metric in NO_DIRECTION and verdict in VERDICTS:
        verdict = "candidate higher" if comparison.difference > 0 else "candidate lower"
    return _badge(verdict, VERDICTS.get(verdict, "na"))


def _variants(sections: Sequence[VariantSection]) -> str:
    parts = ['<section id="variants"><h2>Variant comparison</h2>']
    if not sections:
        parts.append(_note("No deployment of this model has two variants or more."))
    for section in sections:
        parts.append(
            f"<h3>deployment {esc(section.deployment)}: {esc(section.candidate)} "
            f"against {esc(section.baseline)}</h3>"
        )
        parts.append(_note(section.note) if section.note else _comparisons(section))
    return "".join(parts) + "</section>"


def _comparisons(section: VariantSection) -> str:
    rows = [
        (
            esc(c.metric),
            esc(f"{number(c.baseline)} (n={count(c.baseline_rows)})"),
            esc(f"{number(c.candidate)} (n={count(c.candidate_rows)})"),
            esc(
                f"{number(c.difference)} [{number(c.difference_interval.lower)}, "
                f"{number(c.difference_interval.upper)}]"
            ),
            svg.interval(c),
            esc(number(c.p_value, 3)),
            _verdict(c),
        )
        for c in section.comparisons
    ]
    level = section.comparisons[0].difference_interval.level if section.comparisons else 0.95
    header = (
        "metric",
        esc(section.baseline),
        esc(section.candidate),
        f"difference ({level:.0%} interval)",
        "",
        "p-value",
        "verdict",
    )
    return _table(rows, header)
