"""The browser client page in a real headless Chromium against a real daphne.

Chromium comes from Debian (``/usr/bin/chromium``; ``make test`` and ``.ci/run``
install it with scripts/ensure-chromium) and is driven by Playwright's async API
through the ``chromium`` fixture of tests/e2e/conftest.py; ``playwright install``
is never needed. A missing browser or Playwright is a failure, not a skip.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# A missing Playwright is reported by the `chromium` fixture (tests/e2e/conftest.py).
with contextlib.suppress(ImportError):
    from playwright.async_api import expect

if TYPE_CHECKING:
    from playwright.async_api import Browser, Locator, Page

pytestmark = pytest.mark.e2e

SERVER_START_SECONDS = 30.0
SERVER_STOP_SECONDS = 10.0
UI_TIMEOUT_MS = 5_000  # every expectation on the page waits at most this long


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def browser_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A daphne serving the project on a free port with its own SQLite file."""
    workdir = tmp_path_factory.mktemp("browser-server")
    bin_dir = Path(sys.executable).parent
    project = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "graphwiz.settings",
        "SQLITE_PATH": str(workdir / "db.sqlite3"),
        "DEBUG": "true",
    }
    # One process with the in-process channel layer and SQLite: nothing shared;
    # the default ALLOWED_HOSTS admit 127.0.0.1 (HTTP Host and WebSocket Origin).
    for name in ("DATABASE_URL", "REDIS_URL", "REDIS_CHANNEL_PREFIX", "ALLOWED_HOSTS"):
        env.pop(name, None)
    migrated = subprocess.run(
        [str(bin_dir / "python"), "manage.py", "migrate", "--noinput"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    if migrated.returncode != 0:
        pytest.fail(f"manage.py migrate failed:\n{migrated.stdout}{migrated.stderr}")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = workdir / "daphne.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(bin_dir / "daphne"),
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "graphwiz.asgi:application",
            ],
            cwd=project,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                output = log_path.read_text(errors="replace")[-4000:]
                pytest.fail(f"daphne did not answer /health on {url}:\n{output}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=SERVER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def open_page(browser: Browser, base_url: str) -> Page:
    """A page in its own context (own storage), at the client page."""
    context = await browser.new_context(viewport={"width": 1100, "height": 760})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = await context.new_page()
    await page.goto(f"{base_url}/")
    return page


async def join(page: Page, room: str, user: str, name: str) -> str:
    """Fill the form, press Join, wait for the ServerHello; returns my client id."""
    await page.fill("#room", room)
    await page.fill("#user", user)
    await page.fill("#name", name)
    await page.click("#join")
    await expect(page.locator("#status")).to_have_attribute("data-state", "open")
    me = await page.text_content("#me")
    assert me and me.startswith("c"), me
    return me


def member(page: Page, name: str) -> Locator:
    """The row of member ``name`` in ``page``'s member list."""
    return page.locator(f'#members li[data-name="{name}"]')


async def test_two_browsers_see_each_other_and_the_first_is_host(
    browser_server: str, chromium: Browser
) -> None:
    room = f"browser-{uuid.uuid4().hex[:8]}"
    page_a = await open_page(chromium, browser_server)
    page_b = await open_page(chromium, browser_server)
    id_a = await join(page_a, room, "alice", "Alice")
    id_b = await join(page_b, room, "bob", "Bob")

    for page in (page_a, page_b):
        await expect(page.locator("#members li")).to_have_count(2)
        await expect(member(page, "Alice")).to_have_attribute("data-host", "true")
        await expect(member(page, "Bob")).to_have_attribute("data-host", "false")
        await expect(page.locator("#host")).to_contain_text(id_a)
    await expect(member(page_a, "Alice")).to_have_attribute("data-me", "true")
    await expect(member(page_b, "Bob")).to_have_attribute("data-client-id", id_b)


async def test_chat_typed_in_one_page_appears_in_the_other(
    browser_server: str, chromium: Browser, tmp_path: Path
) -> None:
    room = f"browser-{uuid.uuid4().hex[:8]}"
    page_a = await open_page(chromium, browser_server)
    page_b = await open_page(chromium, browser_server)
    id_a = await join(page_a, room, "alice", "Alice")
    await join(page_b, room, "bob", "Bob")
    await expect(member(page_b, "Alice")).to_have_count(1)

    text = "hello <b>Bob</b> & friends"
    await page_a.fill("#chat-input", text)
    await page_a.click("#chat-send")

    received = page_b.locator(f'#chat-log li.chat[data-from="{id_a}"]')
    await expect(received).to_contain_text(text)  # as text: the markup is not interpreted
    await expect(received.locator("b")).to_have_count(0)
    await expect(received).to_contain_text("Alice")
    await expect(page_a.locator("#chat-log li.mine")).to_have_attribute("data-acked", "true")

    screenshot = tmp_path / "page-b-after-chat.png"
    await page_b.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 0


async def test_arrow_keys_move_my_avatar_for_the_others(
    browser_server: str, chromium: Browser
) -> None:
    room = f"browser-{uuid.uuid4().hex[:8]}"
    page_a = await open_page(chromium, browser_server)
    page_b = await open_page(chromium, browser_server)
    await join(page_a, room, "alice", "Alice")
    await join(page_b, room, "bob", "Bob")
    alice_in_a, alice_in_b = member(page_a, "Alice"), member(page_b, "Alice")
    # Each page announces a spawn point on join; B learns A's from its initial state.
    x0 = float(await alice_in_a.get_attribute("data-x") or "nan")
    z0 = float(await alice_in_a.get_attribute("data-z") or "nan")
    await expect(alice_in_b).to_have_attribute("data-x", f"{x0:g}")
    await expect(alice_in_b).to_have_attribute("data-z", f"{z0:g}")

    await page_a.focus("#world")
    for key in ("ArrowRight", "ArrowRight", "ArrowRight", "ArrowDown"):
        await page_a.keyboard.press(key)

    # Steps of 0.5 m from a spawn point on a 4 m ring: exact in float32, never clamped.
    await expect(alice_in_a).to_have_attribute("data-x", f"{x0 + 1.5:g}")
    await expect(alice_in_b).to_have_attribute("data-x", f"{x0 + 1.5:g}")
    await expect(alice_in_b).to_have_attribute("data-z", f"{z0 + 0.5:g}")


async def test_when_the_host_leaves_the_other_becomes_host(
    browser_server: str, chromium: Browser
) -> None:
    room = f"browser-{uuid.uuid4().hex[:8]}"
    page_a = await open_page(chromium, browser_server)
    page_b = await open_page(chromium, browser_server)
    await join(page_a, room, "alice", "Alice")
    id_b = await join(page_b, room, "bob", "Bob")
    await expect(member(page_b, "Alice")).to_have_attribute("data-host", "true")

    await page_a.click("#leave")

    await expect(page_a.locator("#status")).to_have_attribute("data-close-code", "1000")
    await expect(member(page_b, "Alice")).to_have_count(0)
    await expect(page_b.locator("#members li")).to_have_count(1)
    await expect(member(page_b, "Bob")).to_have_attribute("data-host", "true")
    await expect(page_b.locator("#host")).to_contain_text(id_b)


async def test_an_invalid_room_id_shows_close_code_4400(
    browser_server: str, chromium: Browser
) -> None:
    page = await open_page(chromium, browser_server)
    await page.fill("#room", "bad room")
    await page.click("#join")

    status = page.locator("#status")
    await expect(status).to_have_attribute("data-close-code", "4400")
    await expect(status).to_contain_text("4400")
    await expect(status).to_contain_text("bad request")
    await expect(page.locator("#error")).to_contain_text("invalid room id")
    await expect(page.locator("#join")).to_be_enabled()
