"""Generate Python code and mypy stubs from proto/ into generated/.

`python scripts/gen_proto.py` rewrites generated/; `--check` regenerates into a
temporary directory and fails when generated/ differs (stale or hand-edited).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
OUT = ROOT / "generated"


def generate(out: Path) -> None:
    # Only our own protos: the vendored google/api copies are imported from googleapis-common-protos at run time.
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "schedule").rglob("*.proto"))
    bindir = Path(sys.executable).parent
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{Path(grpc_tools.__file__).parent / '_proto'}",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # protoc writes no __init__.py; make each generated directory a regular package.
    for module in out.rglob("*_pb2.py"):
        for directory in module.relative_to(out).parents:
            if directory != Path("."):
                (out / directory / "__init__.py").touch()


def _differences(a: Path, b: Path) -> list[str]:
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    diffs = [str(p) for p in sorted(files_a ^ files_b)]
    diffs += [str(p) for p in sorted(files_a & files_b) if not filecmp.cmp(a / p, b / p, shallow=False)]
    return diffs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if generated/ is not current")
    options = parser.parse_args()
    if options.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            diffs = _differences(Path(tmp), OUT)
        if diffs:
            print("generated/ is stale; run `make proto`. Differs:", *diffs, sep="\n  ")
            return 1
        print("generated/ is current")
        return 0
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    generate(OUT)
    print(f"generated into {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
