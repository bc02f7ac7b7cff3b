"""The contract checks `make lint` runs catch what they are for."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ROOT

BUF = ROOT / "node_modules" / ".bin" / "buf"


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def contracts_repo(tmp_path: Path) -> Path:
    """A git repository holding a copy of the contracts and the breaking check, committed."""
    if not BUF.exists():
        pytest.skip("needs buf from npm: `make node_modules/.installed`")
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "protos", repo / "protos")
    shutil.copy(ROOT / "buf.yaml", repo / "buf.yaml")
    (repo / "tools").mkdir()
    shutil.copy(ROOT / "tools" / "buf_breaking.sh", repo / "tools" / "buf_breaking.sh")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "contracts")
    return repo


def breaking(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "tools/buf_breaking.sh"],
        cwd=repo,
        env={"BUF": str(BUF), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_deleting_a_field_fails_buf_breaking(contracts_repo: Path) -> None:
    schema = contracts_repo / "protos" / "keel" / "common" / "v1" / "schema.proto"
    text = schema.read_text()
    field = "  // Free text for people reading the model card.\n  string description = 10;\n"
    assert field in text
    schema.write_text(text.replace(field, ""))
    result = breaking(contracts_repo)
    assert result.returncode != 0
    assert 'Previously present field "10" with name "description"' in result.stdout + result.stderr


def test_an_added_field_is_not_breaking(contracts_repo: Path) -> None:
    schema = contracts_repo / "protos" / "keel" / "common" / "v1" / "schema.proto"
    text = schema.read_text()
    anchor = "  string description = 10;\n"
    schema.write_text(text.replace(anchor, anchor + "  // New.\n  string note = 11;\n"))
    result = breaking(contracts_repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "against HEAD" in result.stdout


def test_breaking_check_is_skipped_with_a_message_without_history(contracts_repo: Path) -> None:
    result = breaking(contracts_repo)
    assert result.returncode == 0
    assert "skipped, there is no commit 'HEAD~1'" in result.stdout


def protos_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "tools/protos.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_stale_or_hand_edited_stubs_are_reported(tmp_path: Path) -> None:
    assert protos_tool("--out", str(tmp_path)).returncode == 0
    assert protos_tool("--check", "--out", str(tmp_path)).returncode == 0
    stub = tmp_path / "keel" / "common" / "v1" / "schema_pb2.py"
    stub.write_text(stub.read_text() + "# edited by hand\n")
    (tmp_path / "keel" / "common" / "v1" / "metric_pb2.pyi").unlink()
    result = protos_tool("--check", "--out", str(tmp_path))
    assert result.returncode == 1
    assert str(stub) in result.stderr
    assert "metric_pb2.pyi" in result.stderr
