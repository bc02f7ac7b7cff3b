"""``keel report`` as a user runs it — registry and monitor as processes, the command as a
subprocess — and the file it writes opened in headless Chromium (Debian's ``chromium``,
which ``.ci/run`` installs): the charts are in the DOM Chromium built, laid out at a
real size, the page fetched nothing, and the screenshot shows the plots' colours."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import grpc
import numpy as np
import pytest

from keel.monitor.v1 import monitor_pb2 as pb
from keel.monitor.v1 import monitor_pb2_grpc as pb_grpc
from tests.support.monitor import NS, batch, feedback, frame, labels_for, log_classifier
from tests.support.processes import python_env
from tests.support.suite import service

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
REFERENCE_BLUE, CURRENT_ORANGE = (107, 143, 201), (240, 138, 75)  # the page's --ref, --cur
# Appended to a copy of the report (the report itself has no script): what Chromium laid
# out for each chart, and how many resources the page loaded.
MEASURE = """<script>
const charts = [...document.querySelectorAll("svg.chart")].map((svg) => {
  const box = svg.getBoundingClientRect();
  const marks = [...svg.querySelectorAll("rect, path, circle")].filter((mark) => {
    const r = mark.getBoundingClientRect();
    return r.width > 0 && r.height > 0;
  });
  return {label: svg.getAttribute("aria-label"), width: box.width, height: box.height,
          marks: marks.length};
});
const out = document.createElement("pre");
out.id = "measured";
out.textContent = JSON.stringify(
  {charts, resources: performance.getEntriesByType("resource").length});
document.body.appendChild(out);
</script>"""

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (.ci/run installs it: "
    "apt-get install -y chromium)",
)


def chromium(profile: Path, *args: str) -> str:
    done = subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


class Tags(HTMLParser):
    """Counts elements by tag and ``tag.class``."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] += 1
        for cls in (dict(attrs).get("class") or "").split():
            self.counts[f"{tag}.{cls}"] += 1

    handle_startendtag = handle_starttag


def tags(page: str) -> Counter[str]:
    parser = Tags()
    parser.feed(page)
    return parser.counts


def png_pixels(data: bytes) -> tuple[int, int, Counter[tuple[int, ...]]]:
    """Width, height and colour counts of an 8-bit RGB(A) PNG, decoded with zlib."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, packed, header = 8, bytearray(), b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IHDR":
            header = data[pos + 8 : pos + 8 + length]
        elif kind == b"IDAT":
            packed += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and color in (2, 6) and interlace == 0, "unexpected PNG format"
    bpp = 3 if color == 2 else 4
    raw, stride = zlib.decompress(bytes(packed)), width * bpp
    previous, colours = bytearray(stride), Counter[tuple[int, ...]]()
    for y in range(height):
        start = y * (stride + 1)
        line = unfilter(raw[start], bytearray(raw[start + 1 : start + 1 + stride]), previous, bpp)
        colours.update(tuple(line[i : i + 3]) for i in range(0, stride, bpp))
        previous = line
    return width, height, colours


def unfilter(kind: int, line: bytearray, previous: bytearray, bpp: int) -> bytearray:
    """One scanline with its PNG filter undone (RFC 2083, section 6)."""
    if kind == 0:
        return line
    if kind == 2:
        return bytearray((x + y) & 0xFF for x, y in zip(line, previous, strict=True))
    for i in range(len(line)):
        a = line[i - bpp] if i >= bpp else 0
        b = previous[i]
        c = previous[i - bpp] if i >= bpp else 0
        if kind == 1:
            line[i] = (line[i] + a) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + ((a + b) >> 1)) & 0xFF
        elif kind == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
    return line


async def log_traffic(monitor: str, version: int) -> None:
    """An hour of rows like the reference, then an hour with x0 shifted; all labelled."""
    async with grpc.aio.insecure_channel(monitor) as channel:
        stub = pb_grpc.MonitorServiceStub(channel)
        for sequence, (shift, hours_ago) in enumerate(((0.0, 1), (1.0, 0)), start=1):
            x = frame(1500, 40 + sequence, shift=shift).to_numpy()
            ids = [f"s{sequence}-{i}" for i in range(len(x))]
            when = time.time_ns() - hours_ago * 3600 * NS
            message = batch("churn", version, x, ids, sequence=sequence, when_ns=when)
            await stub.LogPredictionBatch(pb.LogPredictionBatchRequest(batch=message), timeout=30)
            truth = labels_for(x)
            truth[np.random.default_rng(sequence).random(len(x)) < 0.1] ^= 1
            await stub.LogFeedback(feedback("churn", ids, truth), timeout=30)


async def test_report_opens_in_chromium_with_its_plots_rendered(tmp_path: Path) -> None:
    with service(tmp_path, "registry", {}) as registry:
        with service(tmp_path, "monitor", {"KEEL_MONITOR_REGISTRY_ADDRESS": registry.address}) as (
            monitor
        ):
            version = await log_classifier(registry.address, "churn", protected=["x1"])
            await log_traffic(monitor.address, version)
            argv = ["report", "churn", "--registry", registry.address]
            done = subprocess.run(
                [sys.executable, "-m", "keel", *argv, "--monitor", monitor.address],
                cwd=tmp_path,
                env=python_env(),
                capture_output=True,
                text=True,
                timeout=120,
            )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "wrote keel-report-churn.html"
    report = tmp_path / "keel-report-churn.html"
    page = report.read_text(encoding="utf-8")
    written = tags(page)
    assert written["svg.chart"] >= 8  # 4 features + prediction + label, volume, metrics, fairness

    # The DOM Chromium built holds every chart and every bar the file has.
    dom = tags(chromium(tmp_path / "profile", "--dump-dom", report.as_uri()))
    for tag in ("svg.chart", "rect.ref", "rect.cur", "path.line", "circle.dot"):
        assert dom[tag] == written[tag] > 0, tag

    # Laid out: every chart has a real size and visible marks; nothing was fetched.
    measured_page = tmp_path / "measured.html"
    measured_page.write_text(page.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    dumped = chromium(tmp_path / "profile", "--dump-dom", measured_page.as_uri())
    found = re.search(r'<pre id="measured">(.*?)</pre>', dumped, re.S)
    assert found, dumped[-2000:]
    measured = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert measured["resources"] == 0
    assert len(measured["charts"]) == written["svg.chart"]
    for chart in measured["charts"]:
        assert chart["width"] >= 200 and chart["height"] >= 20 and chart["marks"] > 0, chart
        if re.fullmatch(r"x\d: reference and current distribution", chart["label"]):
            assert chart["marks"] == 22, chart  # 10 reference and 10 current bars, 2 keys

    # The screenshot is not blank: the bars' two colours cover thousands of pixels.
    shot = tmp_path / "report.png"
    chromium(
        tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,2000", report.as_uri()
    )
    width, height, colours = png_pixels(shot.read_bytes())
    assert (width, height) == (1200, 2000)
    assert colours[(255, 255, 255)] < 0.95 * width * height
    assert colours[REFERENCE_BLUE] > 5000 and colours[CURRENT_ORANGE] > 5000, colours.most_common(5)
