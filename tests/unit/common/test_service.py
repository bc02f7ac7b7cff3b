"""The ready line and ready file a service process writes once it is serving."""

from __future__ import annotations

import json
from pathlib import Path

from services.common.service import Listening, read_ready_file, write_ready_file


def test_ready_file_round_trips_and_leaves_no_partial_file(tmp_path: Path) -> None:
    listening = Listening("registry", "127.0.0.1", 41234, 9101, 4242)
    path = tmp_path / "run" / "registry.json"
    write_ready_file(path, listening)
    assert read_ready_file(path) == listening
    assert json.loads(path.read_text())["address"] == "127.0.0.1:41234"
    assert [p.name for p in path.parent.iterdir()] == ["registry.json"]


def test_ready_line_is_the_documented_one() -> None:
    line = Listening("monitor", "127.0.0.1", 50053, None, 1).line()
    assert line == "keel: monitor listening on 127.0.0.1:50053"
