"""Generate Keel's stubs from protos/ (``make protos``): Python into clients/python and
TypeScript into clients/typescript/src/gen.

Python: import path = proto path, ``protos/keel/registry/v1/registry.proto`` becomes
``keel.registry.v1.registry_pb2`` (+ ``_pb2_grpc`` and mypy-protobuf ``.pyi`` stubs).
Every generated package gets an ``__init__.py``.
TypeScript: ``buf generate`` with clients/typescript/buf.gen.yaml and the protoc-gen-es
pinned in package.json (node_modules/.bin), e.g. ``keel/registry/v1/registry_pb.ts``;
every file under src/gen is generated.
``--check`` generates into a scratch folder and fails if that differs from what is
committed (stale or hand-edited stubs). ``--out`` / ``--ts-out`` point one language
elsewhere; given either, only the languages named are handled.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
CLIENT = ROOT / "clients" / "python"
GENERATED = ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py", "*_pb2_grpc.pyi")
PACKAGE_DOC = '"""Generated from protos/ by `make protos`; do not edit."""\n'
NODE_BIN = ROOT / "node_modules" / ".bin"
TS_TEMPLATE = ROOT / "clients" / "typescript" / "buf.gen.yaml"
# The template's `out`, relative to the folder buf generates under (its --output).
TS_OUT = Path("clients") / "typescript" / "src" / "gen"
ROOT_DOC = (
    '"""Keel\'s contracts (generated stubs under keel.<package>.v1) and the Python client\n'
    '(keel.client). Written by `make protos`."""\n'
)


def generate(out: Path) -> None:
    # mypy-protobuf's plugins live beside this interpreter (the venv's bin/).
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        "--mypy_opt=quiet",
        "--mypy_grpc_opt=quiet",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for source in sources:
        package = (out / source).parent
        while package != out:
            init = package / "__init__.py"
            if not init.exists():
                init.write_text(PACKAGE_DOC)
            package = package.parent
    (out / "keel" / "__init__.py").write_text(ROOT_DOC)


def generated_files(root: Path) -> set[Path]:
    keel = root / "keel"
    found = {p for pattern in GENERATED for p in keel.rglob(pattern)}
    found |= {p for p in keel.rglob("__init__.py") if p.read_text().startswith(PACKAGE_DOC[:20])}
    found.add(keel / "__init__.py")
    return {p.relative_to(root) for p in found if p.exists()}


def clean(root: Path) -> None:
    for relative in generated_files(root):
        (root / relative).unlink()


def generate_ts(out: Path) -> None:
    """TypeScript stubs into ``out`` (replacing what is there), through buf and the pinned
    protoc-gen-es; buf writes under a scratch folder first since the template names its
    ``out`` folder relative to where it generates."""
    buf = NODE_BIN / "buf"
    if not buf.exists():
        raise SystemExit(f"{buf} is missing: run `make tools-js` (npm ci) first")
    with tempfile.TemporaryDirectory() as scratch:
        command = [str(buf), "generate", "--template", str(TS_TEMPLATE), "--output", scratch]
        if subprocess.run(command, cwd=ROOT).returncode != 0:
            raise SystemExit("buf generate failed")
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(Path(scratch) / TS_OUT, out)


def ts_files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()}


def stale_files(
    generator: Callable[[Path], None], files: Callable[[Path], set[Path]], target: Path
) -> list[Path]:
    """Files under ``target`` that differ from a fresh generation: missing, extra or edited."""
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch) / "fresh"
        fresh.mkdir()
        generator(fresh)
        expected, actual = files(fresh), files(target)
        stale = sorted(expected ^ actual)
        stale += sorted(
            p for p in expected & actual if not filecmp.cmp(fresh / p, target / p, shallow=False)
        )
    return [target / p for p in stale]


def report(what: str, stale: list[Path]) -> int:
    if stale:
        print(f"{what} differ from protos/; run `make protos` and commit:", file=sys.stderr)
        for path in stale:
            print(f"  {path}", file=sys.stderr)
        return 1
    print(f"{what} are up to date")
    return 0


def check(target: Path) -> int:
    return report("generated stubs", stale_files(generate, generated_files, target))


def check_ts(target: Path) -> int:
    return report("generated TypeScript stubs", stale_files(generate_ts, ts_files, target))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the stubs are stale")
    parser.add_argument("--out", type=Path, help=f"where the Python stubs live ({CLIENT})")
    parser.add_argument(
        "--ts-out", type=Path, help=f"where the TypeScript stubs live ({ROOT / TS_OUT})"
    )
    args = parser.parse_args()
    both = args.out is None and args.ts_out is None
    python: Path | None = args.out or (CLIENT if both else None)
    typescript: Path | None = args.ts_out or (ROOT / TS_OUT if both else None)
    if args.check:
        failed = check(python) if python else 0
        return (check_ts(typescript) if typescript else 0) or failed
    if python:
        clean(python)
        generate(python)
    if typescript:
        generate_ts(typescript)
    return 0


if __name__ == "__main__":
    sys.exit(main())
