"""The layers of DESIGN.md ("Layout"), as `make lint` checks them: the import-linter
contracts of pyproject.toml ([tool.importlinter]) hold, so `make test` enforces them too.

kranj (CLI, supervisor, docs) > services > shared: `shared/` imports nothing from
`services/` or `kranj/`, and no service imports another."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def test_import_linter_contracts_are_kept() -> None:
    proc = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 kept, 0 broken" in proc.stdout, proc.stdout
