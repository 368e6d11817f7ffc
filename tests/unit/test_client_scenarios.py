"""Both clients run the same scenario suite (tests/clients/scenarios/names.txt).

Each scenario name is a test in the JavaScript suite (``test("name", ...)``)
and in the Python one (``def test_name``); a scenario missing on one side fails.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NAMES = ROOT / "tests" / "clients" / "scenarios" / "names.txt"
SUITES = {
    "unit": ("tests/js/unit.test.js", "tests/unit/test_client_core.py"),
    "live": ("tests/js/live.test.js", "tests/e2e/test_python_client.py"),
    "resume": ("tests/js/resume.test.js", "tests/e2e/test_client_resume.py"),
}


def scenarios() -> list[tuple[str, str]]:
    group, found = "", []
    for line in NAMES.read_text().splitlines():
        if line.startswith("#"):
            group = line.lstrip("# ").split(":")[0]
        elif line.strip():
            found.append((group, line.strip()))
    return found


def test_every_group_of_scenarios_has_its_suites() -> None:
    assert {group for group, _ in scenarios()} == set(SUITES)


@pytest.mark.parametrize(("group", "name"), scenarios())
def test_scenario_is_in_both_client_suites(group: str, name: str) -> None:
    js_file, py_file = SUITES[group]
    js = (ROOT / js_file).read_text()
    py = (ROOT / py_file).read_text()
    assert f'test("{name}"' in js, f"{js_file} has no test {name!r}"
    assert re.search(rf"^(async )?def test_{name}\(", py, re.M), f"{py_file} has no test_{name}"
