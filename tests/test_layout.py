"""The package's shape is checked by the tools that own it: import-linter (the one-way imports declared in
pyproject.toml) and ruff (lint and format, configured there too)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

BIN = Path(sys.executable).parent


def run_tool(name: str, *args: str) -> subprocess.CompletedProcess:
    executable = BIN / name if (BIN / name).exists() else shutil.which(name)
    if executable is None:
        pytest.fail(f"{name} is not installed: it comes with the `test` extra (pip install -e '.[test]')")
    return subprocess.run([str(executable), *args], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)


def test_imports_keep_the_declared_layers():
    result = run_tool("lint-imports")
    assert result.returncode == 0, result.stdout[-4000:]
    assert "0 broken" in result.stdout


def test_ruff_finds_nothing_to_fix():
    result = run_tool("ruff", "check", "hf_ser", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout[-4000:]


def test_ruff_format_leaves_every_file_as_it_is():
    result = run_tool("ruff", "format", "--check", "hf_ser", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout[-4000:]
