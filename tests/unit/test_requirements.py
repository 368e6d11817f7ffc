"""requirements.txt (what runs) and requirements-dev.txt (tests, bench, lint), checked by content.

The image and ``make run`` install only the runtime set; every module the
service imports must come from it, or from what its packages pull in. The
dependency closure is read from the installed distributions' metadata.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "requirements.txt"
DEV = ROOT / "requirements-dev.txt"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
# Packages that only test, measure or lint; none belongs in the image.
TOOLS = {
    "pytest",
    "pytest-django",
    "pytest-asyncio",
    "playwright",
    "greenlet",
    "pyyaml",
    "matplotlib",
    "grpcio-tools",
    "ruff",
    "mypy",
    "types-protobuf",
    "django-stubs",
    "django-stubs-ext",
    "djangorestframework-stubs",
    "types-channels",
    "py-spy",
    "schemathesis",
    "hypothesis",
}


def requirement_lines(path: Path) -> tuple[list[Requirement], list[str]]:
    """The file's requirements and the files it includes with ``-r``."""
    requirements: list[Requirement] = []
    includes: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            includes.append(line[3:].strip())
        else:
            requirements.append(Requirement(line))
    return requirements, includes


def requirements_of(path: Path) -> list[Requirement]:
    """Every requirement ``pip install -r path`` installs directly (includes followed)."""
    own, includes = requirement_lines(path)
    return [*own, *(r for inc in includes for r in requirements_of(path.parent / inc))]


def closure(requirements: Iterable[Requirement]) -> set[str]:
    """Canonical names of the distributions these requirements install, recursively."""
    seen: set[str] = set()
    todo = [(r, tuple(sorted(r.extras))) for r in requirements]
    while todo:
        requirement, extras = todo.pop()
        name = canonicalize_name(requirement.name)
        key = name + "[" + ",".join(extras) + "]"
        if key in seen:
            continue
        seen.add(key)
        seen.add(name)
        try:
            requires = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            continue  # not installed here: its own dependencies cannot be read
        for spec in requires:
            dependency = Requirement(spec)
            wanted = dependency.marker is None or any(
                dependency.marker.evaluate({**default_environment(), "extra": extra})
                for extra in (extras or ("",))
            )
            if wanted:
                todo.append((dependency, tuple(sorted(dependency.extras))))
    return {key for key in seen if "[" not in key}


def imported_top_level(folders: Iterable[str]) -> dict[str, str]:
    """Top-level modules imported by the ``.py`` files under ``folders``: name -> a file."""
    found: dict[str, str] = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def unsatisfied(folders: Iterable[str], installed_by: set[str]) -> dict[str, str]:
    """Third-party imports under ``folders`` whose distribution ``installed_by`` lacks."""
    local = {p.name for p in ROOT.iterdir() if p.is_dir()} | {"manage"}
    providers = metadata.packages_distributions()
    missing: dict[str, str] = {}
    for module, where in imported_top_level(folders).items():
        if module in sys.stdlib_module_names or module in local:
            continue
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        if not dists & installed_by:
            missing[module] = f"{where} (from {sorted(dists) or 'no installed distribution'})"
    return missing


def image_requirement_files() -> list[Path]:
    """The files the Dockerfile's ``pip install -r`` lines install."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    files = [
        ROOT / name
        for line in re.findall(r"(?m)^RUN\s+.*\bpip\b.*\binstall\b.*$", text)
        for name in re.findall(r"(?:-r|--requirement)\s+(\S+)", line)
    ]
    assert files, "the Dockerfile installs no requirements file"
    return files


# --- the runtime set -------------------------------------------------------------


def test_the_image_installs_only_the_runtime_requirements() -> None:
    assert image_requirement_files() == [RUNTIME]


def test_the_runtime_requirements_name_no_test_or_bench_tool() -> None:
    names = {canonicalize_name(r.name) for r in requirements_of(RUNTIME)}
    assert not names & TOOLS, f"test/bench tools in requirements.txt: {sorted(names & TOOLS)}"


def test_the_runtime_requirements_include_no_other_file() -> None:
    _, includes = requirement_lines(RUNTIME)
    assert includes == []


def test_every_import_of_the_service_comes_with_the_runtime_requirements() -> None:
    missing = unsatisfied(["presence", "graphwiz"], closure(requirements_of(RUNTIME)))
    assert not missing, f"imported by the service but not installed by requirements.txt: {missing}"


def test_the_servers_the_image_and_make_run_start_are_runtime_requirements() -> None:
    # uvicorn's `--ws websockets-sansio` imports websockets when it starts.
    names = {canonicalize_name(r.name) for r in requirements_of(RUNTIME)}
    assert {"uvicorn", "daphne", "websockets"} <= names


# --- the development set ---------------------------------------------------------


def test_the_dev_requirements_build_on_the_runtime_set() -> None:
    _, includes = requirement_lines(DEV)
    assert includes == ["requirements.txt"]


def test_the_dev_requirements_do_not_repeat_the_runtime_set() -> None:
    own, _ = requirement_lines(DEV)
    runtime = {canonicalize_name(r.name) for r in requirements_of(RUNTIME)}
    repeated = {canonicalize_name(r.name) for r in own} & runtime
    assert not repeated, f"listed in both files (one pin each): {sorted(repeated)}"


def test_every_import_of_the_tests_and_bench_comes_with_the_dev_requirements() -> None:
    missing = unsatisfied(["tests", "bench"], closure(requirements_of(DEV)))
    assert not missing, f"imported by tests or bench but not in requirements-dev.txt: {missing}"


@pytest.mark.parametrize("path", [RUNTIME, DEV], ids=lambda p: p.name)
def test_every_requirement_is_pinned(path: Path) -> None:
    own, _ = requirement_lines(path)
    loose = [str(r) for r in own if [s.operator for s in r.specifier] != ["=="]]
    assert not loose, f"pin these with ==: {loose}"


# --- the Makefile and the build context ------------------------------------------


def make_rule(target: str) -> str:
    """The prerequisites line of ``target`` in the Makefile."""
    match = re.search(rf"(?m)^{re.escape(target)}:([^\n]*)$", (ROOT / "Makefile").read_text())
    assert match, f"no rule for {target}"
    return match.group(1).split("##")[0]


def installs(stamp: str) -> tuple[str, str]:
    """The prerequisites of the stamp rule ``stamp`` and the file its pip installs."""
    makefile = (ROOT / "Makefile").read_text()
    rule = re.search(rf"(?m)^{re.escape(stamp)}:([^\n]*)\n\t.*pip install .*-r (\S+)$", makefile)
    assert rule, f"no rule installing requirements for {stamp}"
    return rule.group(1), rule.group(2)


def test_make_run_installs_the_runtime_set_and_test_and_bench_the_dev_set() -> None:
    runtime_stamp, dev_stamp = "$(BIN)/.installed-runtime", "$(BIN)/.installed-dev"
    prerequisites, installed = installs(runtime_stamp)
    assert installed == "requirements.txt" and "requirements.txt" in prerequisites.split()
    prerequisites, installed = installs(dev_stamp)
    assert installed == "requirements-dev.txt"
    assert {"requirements.txt", "requirements-dev.txt"} <= set(prerequisites.split())
    assert make_rule("install-runtime").split() == [runtime_stamp]
    assert make_rule("install").split() == [dev_stamp]
    assert "install-runtime" in make_rule("migrate").split()
    assert "migrate" in make_rule("run").split()
    for target in ("test", "bench", "lint", "unit"):
        assert "install" in make_rule(target).split(), target


def test_the_build_context_leaves_tests_bench_and_local_state_out() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {"tests", "bench", "requirements-dev.txt", "db.sqlite3*"} <= ignored


def test_git_ignores_the_sqlite_side_files() -> None:
    ignored = set((ROOT / ".gitignore").read_text().split())
    assert {"db.sqlite3", "db.sqlite3-wal", "db.sqlite3-shm"} <= ignored
