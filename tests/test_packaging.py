"""Every distribution that stylexport/ imports is declared in pyproject.toml (deptry), so a fresh install works."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _deptry(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deptry", "--no-ansi", "."], cwd=root, capture_output=True,
                          text=True, timeout=300)


def test_every_import_is_declared():
    result = _deptry(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_deptry_catches_an_undeclared_import(tmp_path):
    """The check above can fail: the same configuration flags an import of an undeclared distribution."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "stylexport").mkdir()
    (tmp_path / "stylexport" / "__init__.py").write_text("import torch\n")
    (tmp_path / "stylexport" / "cli.py").write_text("import click  # not declared: typer vendors its own\n")
    result = _deptry(tmp_path)
    assert result.returncode != 0
    assert "'click' imported but" in result.stdout + result.stderr
