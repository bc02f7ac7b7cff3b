"""``keel report``: one self-contained HTML file on a model version in production.

    from keel.report import collect, render
    report = collect("churn", registry="127.0.0.1:50051", monitor="127.0.0.1:50053")
    Path("keel-report-churn.html").write_text(render(report), encoding="utf-8")

``collect`` asks the registry and the monitor (grpcio and protobuf only); ``render``
writes the page with inline CSS and hand-made SVG charts, nothing fetched when opened.
"""

from keel.report.collect import collect
from keel.report.data import Report
from keel.report.page import render

__all__ = ["Report", "collect", "render"]
