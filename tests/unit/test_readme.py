"""README.md promises commands, options, files and sections: each of them exists."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from bench.run import parse_args

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
MAKEFILE = (ROOT / "Makefile").read_text(encoding="utf-8")


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
