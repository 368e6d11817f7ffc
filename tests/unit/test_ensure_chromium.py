"""scripts/ensure-chromium: the browser `make test` needs, installed or asked for.

The script is run for real with bash, but with a PATH of stubs: a fake ``id``
says who we are and a fake ``apt-get`` records its calls and "installs" by
creating the file at ``CHROMIUM_PATH`` (a temp path). The machine's Chromium
is never touched.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "ensure-chromium"
BASH = shutil.which("bash") or "/bin/bash"
# The stubs run with PATH = the stub folder only: they name real tools in full.
MKDIR = shutil.which("mkdir") or "/bin/mkdir"
CHMOD = shutil.which("chmod") or "/bin/chmod"
INSTALL_COMMAND = "sudo apt-get install -y chromium"


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    apt_calls: list[str]


@pytest.fixture
def browser(tmp_path: Path) -> Path:
    """Where the script is told Chromium lives (absent until created)."""
    return tmp_path / "usr-bin" / "chromium"


def write_stub(directory: Path, name: str, body: str) -> None:
    stub = directory / name
    stub.write_text(f"#!{BASH}\n{body}\n")
    stub.chmod(0o755)


def run_script(
    tmp_path: Path,
    browser: Path,
    *,
    uid: int,
    apt: str | None = "install",
    env: dict[str, str] | None = None,
) -> Run:
    """Run the script as ``uid``; ``apt``: "install", "fail" or None (no apt-get)."""
    stubs = tmp_path / "stubs"
    stubs.mkdir(exist_ok=True)
    calls = tmp_path / "apt-calls"
    calls.touch()
    write_stub(stubs, "id", f'[[ "$1" == -u ]] && echo {uid}')
    if apt is not None:
        create = f'printf "#!/bin/sh\\n" > "{browser}"'
        install = (
            f'{MKDIR} -p "{browser.parent}"; {create}; {CHMOD} +x "{browser}"'
            if apt == "install"
            else "exit 100"
        )
        write_stub(
            stubs,
            "apt-get",
            f'echo "$*" >> "{calls}"\n[[ "$1" == install ]] && {{ {install}; }}\nexit 0',
        )
    done = subprocess.run(
        [BASH, str(SCRIPT)],
        env={"PATH": str(stubs), "CHROMIUM_PATH": str(browser), **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr, calls.read_text().splitlines())


def test_a_present_browser_is_only_reported(tmp_path: Path, browser: Path) -> None:
    browser.parent.mkdir(parents=True)
    browser.write_text("#!/bin/sh\n")
    browser.chmod(0o755)

    run = run_script(tmp_path, browser, uid=0)

    assert run.returncode == 0, run.stderr
    assert str(browser) in run.stdout
    assert run.apt_calls == []


def test_root_installs_a_missing_browser_with_apt_get(tmp_path: Path, browser: Path) -> None:
    run = run_script(tmp_path, browser, uid=0)

    assert run.returncode == 0, run.stderr
    assert run.apt_calls[0].startswith("update")
    assert re.fullmatch(r"install -y .*\bchromium", run.apt_calls[1])
    assert browser.exists()


def test_root_skips_apt_get_update_when_the_caller_just_ran_it(
    tmp_path: Path, browser: Path
) -> None:
    run = run_script(tmp_path, browser, uid=0, env={"CI_APT_UPDATED": "1"})

    assert run.returncode == 0, run.stderr
    assert [call.split()[0] for call in run.apt_calls] == ["install"]


def test_a_user_who_is_not_root_gets_one_line_with_the_command(
    tmp_path: Path, browser: Path
) -> None:
    run = run_script(tmp_path, browser, uid=1000)

    assert run.returncode != 0
    assert run.apt_calls == []
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert INSTALL_COMMAND in lines[0] and str(browser) in lines[0]


def test_a_failed_install_fails_with_the_command_to_run(tmp_path: Path, browser: Path) -> None:
    run = run_script(tmp_path, browser, uid=0, apt="fail")

    assert run.returncode != 0
    assert INSTALL_COMMAND in run.stderr
    assert not browser.exists()


def test_root_without_apt_get_is_told_what_is_missing(tmp_path: Path, browser: Path) -> None:
    run = run_script(tmp_path, browser, uid=0, apt=None)

    assert run.returncode != 0
    assert "apt-get is not available" in run.stderr and str(browser) in run.stderr


def test_make_test_and_ci_run_use_the_script_and_nothing_else_installs_chromium() -> None:
    makefile = (ROOT / "Makefile").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_prerequisites = re.search(r"(?m)^test:(.*)$", makefile)
    assert test_prerequisites and "chromium" in test_prerequisites.group(1).split()
    assert re.search(r"(?m)^chromium:\n\t@?scripts/ensure-chromium$", makefile)
    assert re.search(r"(?m)^scripts/ensure-chromium$", ci)
    assert "install chromium" not in ci  # one copy: the script
