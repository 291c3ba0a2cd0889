"""Static checks run as tests: the layer rules (import-linter contracts in pyproject.toml) and mypy in its
stricter mode for metadata/, blocks/ and fusefs/ (pyproject.toml's overrides).  Each is skipped, with the reason
shown by ``pytest -ra``, when its tool is not installed (both are in the ``test`` extra).  Each check is
also run on a copy of the packages with a planted violation, so a configuration that checks nothing
fails too."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("metadata", "blocks", "fusefs")


def _require(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[test]')")


def _run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    _require("importlinter")
    return _run(root, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()")


def _mypy(root: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    _require("mypy")
    return _run(root, "-m", "mypy", "--cache-dir", str(cache), *PACKAGES)


def _copy_of_repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for package in PACKAGES:
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as file:
        file.write(text)


def test_layer_rules_hold():
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Contracts: \d+ kept, 0 broken", result.stdout), result.stdout


def test_layer_rules_catch_a_forbidden_import(tmp_path):
    root = _copy_of_repo(tmp_path)
    _append(root / "metadata" / "printable.py", "\nimport trio  # noqa\n")
    _append(root / "blocks" / "layout.py", "\nfrom metadata import model  # noqa\n")
    result = _lint_imports(root)
    assert result.returncode != 0
    assert "metadata/ imports neither blocks/, fusefs/, pyfuse3 nor trio BROKEN" in result.stdout
    assert "blocks/ imports neither metadata/, fusefs/, pyfuse3 nor trio BROKEN" in result.stdout
    assert "metadata.printable -> trio" in result.stdout
    assert "blocks.layout -> metadata.model" in result.stdout


def test_every_package_type_checks(tmp_path):
    result = _mypy(REPO, tmp_path / "mypy-cache")
    assert result.returncode == 0, result.stdout + result.stderr


def test_type_check_is_in_its_stricter_mode(tmp_path):
    root = _copy_of_repo(tmp_path)
    _append(
        root / "blocks" / "layout.py",
        "\n\ndef _incomplete(size: int, name):\n    return size\n\n\n"
        "def _untyped():\n    count: int = 'many'\n    return count\n",
    )
    _append(root / "metadata" / "printable.py", "\n\nLIMIT = 3  # type: ignore[misc]\n")
    _append(
        root / "fusefs" / "limits.py",
        "\n\ndef _half_typed(count: int, unit):\n    return count\n\n\n"
        "def _untyped_body():\n    size: str = 4\n    return size\n",
    )
    result = _mypy(root, tmp_path / "mypy-cache")
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"blocks/layout\.py:\d+: error: Function is missing a type annotation for one", out), out
    assert re.search(r"blocks/layout\.py:\d+: error: Incompatible types in assignment", out), out
    assert re.search(r'metadata/printable\.py:\d+: error: Unused "type: ignore" comment', out), out
    assert re.search(r"fusefs/limits\.py:\d+: error: Function is missing a type annotation for one", out), out
    assert re.search(r"fusefs/limits\.py:\d+: error: Incompatible types in assignment", out), out


def test_documents_named_in_the_code_exist():
    """A pointer to a design note that is not in the repository tells the reader nothing."""
    missing = []
    for path in sorted(REPO.glob("*/**/*.py")):
        if path.is_relative_to(REPO / ".venv"):
            continue
        for name in re.findall(r"\b\w[\w./-]*\.md\b", path.read_text(encoding="utf-8")):
            if not any((base / name).exists() for base in (REPO, path.parent, REPO / "docs")):
                missing.append(f"{path.relative_to(REPO)}: {name}")
    assert not missing, "\n".join(missing)
