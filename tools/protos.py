"""Generate Keel's Python stubs from protos/ into clients/python (``make protos``).

Import path = proto path: ``protos/keel/registry/v1/registry.proto`` becomes
``keel.registry.v1.registry_pb2`` (+ ``_pb2_grpc`` and mypy-protobuf ``.pyi`` stubs).
Every generated package gets an ``__init__.py``. ``--check`` generates into a scratch
folder and fails if that differs from what is committed (stale or hand-edited stubs).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
CLIENT = ROOT / "clients" / "python"
GENERATED = ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py", "*_pb2_grpc.pyi")
PACKAGE_DOC = '"""Generated from protos/ by `make protos`; do not edit."""\n'
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


def check(target: Path) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch)
        generate(fresh)
        expected, actual = generated_files(fresh), generated_files(target)
        stale = sorted(str(p) for p in expected ^ actual)
        stale += sorted(
            str(p)
            for p in expected & actual
            if not filecmp.cmp(fresh / p, target / p, shallow=False)
        )
    if stale:
        print("generated stubs differ from protos/; run `make protos` and commit:", file=sys.stderr)
        for path in stale:
            print(f"  {target / path}", file=sys.stderr)
        return 1
    print("generated stubs are up to date")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the stubs in --out are stale")
    parser.add_argument("--out", type=Path, default=CLIENT, help="where the stubs live")
    args = parser.parse_args()
    if args.check:
        return check(args.out)
    clean(args.out)
    generate(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
