"""README.md promises commands, options, files, sections and defaults: each of them holds."""

from __future__ import annotations

import ast
import re
import unicodedata
from pathlib import Path

from bench.run import parse_args

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
MAKEFILE = (ROOT / "Makefile").read_text(encoding="utf-8")
SETTINGS = (ROOT / "graphwiz" / "settings.py").read_text(encoding="utf-8")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to dashes."""
    text = unicodedata.normalize("NFKC", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_the_readme_starts_with_the_quick_start() -> None:
    sections = re.findall(r"(?m)^## (.+)$", README)
    assert sections[:2] == ["Quick start", "A two-minute tour"], sections
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "make run" in quick and "two browser tabs" in quick
    assert "createsuperuser" in quick and "create_user(" in quick
    assert "ALLOWED_HOSTS" in quick and "HOST=0.0.0.0" in quick


def test_every_make_target_the_readme_names_exists() -> None:
    targets = set(re.findall(r"(?m)^([\w-]+):", MAKEFILE))
    named = set(re.findall(r"\bmake ([a-z][\w-]*)", README))
    assert {"run", "test", "bench"} <= named
    assert named <= targets, f"README names make targets the Makefile lacks: {named - targets}"


def test_every_bench_option_the_readme_names_exists() -> None:
    known = {"--" + dest.replace("_", "-") for dest in vars(parse_args([]))} | {"--help"}
    performance = README.split("## Performance", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"(--[a-z][a-z0-9-]+)", performance))
    assert "--quick" in named
    assert named <= known, f"README names bench options that do not exist: {named - known}"


def test_every_link_to_a_file_of_the_repository_resolves() -> None:
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    local = [t for t in targets if "://" not in t]
    assert "docs/PROTOCOL.md" in local
    outside = [t for t in local if not (ROOT / t).resolve().is_relative_to(ROOT)]
    assert not outside, f"README links files outside the repository: {outside}"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README links files that do not exist: {missing}"


def test_every_link_to_a_section_resolves() -> None:
    anchors = {github_anchor(h) for h in re.findall(r"(?m)^#{1,6} (.+)$", README)}
    linked = set(re.findall(r"\]\(#([^)]+)\)", README))
    assert linked, "no section links found"
    assert linked <= anchors, f"README links sections that do not exist: {linked - anchors}"


def settings_defaults() -> dict[str, object]:
    """Environment variable -> the literal default graphwiz/settings.py reads it with."""
    defaults: dict[str, object] = {}
    for node in ast.walk(ast.parse(SETTINGS)):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id.startswith("env_")
            and len(node.args) >= 3
            and isinstance(node.args[1], ast.Constant)
        ):
            continue
        try:
            defaults[str(node.args[1].value)] = ast.literal_eval(node.args[2])
        except ValueError:  # an expression (another setting, a constant): not comparable here
            continue
    return defaults


def as_readme_writes_it(value: object) -> str:
    """A default as the README's tables write it (``true``, ``60``, ``a,b``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def test_every_default_the_readme_states_is_the_one_the_settings_use() -> None:
    rows = re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \| `([^`|]*)` \|", README, re.MULTILINE)
    defaults = settings_defaults()
    compared = [(var, said) for var, said in rows if var in defaults]
    assert len(compared) >= 20, compared  # the tables were found
    wrong = [
        (var, said, as_readme_writes_it(defaults[var]))
        for var, said in compared
        if said != as_readme_writes_it(defaults[var])
    ]
    assert wrong == []
