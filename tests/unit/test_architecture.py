"""docs/architecture.md draws the parts as the import contracts check them, and the contracts hold."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    return [part.strip().removeprefix("schedule_grpc.") for layer in layers for part in re.split("[:|]", layer)]


def test_every_part_of_the_package_is_a_layer_of_the_contract() -> None:
    package = ROOT / "schedule_grpc"
    parts = {p.parent.name for p in package.glob("*/__init__.py")} | {
        p.stem for p in package.glob("*.py") if p.stem != "__init__"
    }
    assert parts == set(_layers())


def test_the_architecture_page_lists_the_parts_in_the_contract_s_order() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text()
    listed = re.findall(r"^- \*\*(\w+)\*\*:", page, flags=re.MULTILINE)
    assert listed == _layers()


def test_the_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:]
