"""The page at ``/`` as a real room, in headless Chromium (Debian's) via Playwright.

Built on presence/static/presence/client.js: entities, the room list, the raw
log, a cut socket (through :class:`~tests.clients.tcpcut.CutProxy`) and, with
``DEBUG`` off, signing in with a Django session or the login form.
Screenshots of each state go to ``screenshots/`` (git-ignored) for a person
to look at.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.clients.live import http_post_json, obtain_token
from tests.clients.tcpcut import CutProxy
from tests.e2e.conftest import (
    PROJECT,
    Server,
    create_superuser,
    serving,
)
from tests.e2e.jsnode import create_user

with contextlib.suppress(ImportError):
    from playwright.async_api import expect

if TYPE_CHECKING:
    from playwright.async_api import Browser, Locator, Page

pytestmark = pytest.mark.e2e

UI_TIMEOUT_MS = 5_000
RECONNECT_TIMEOUT_MS = 15_000
SCREENSHOTS = PROJECT / "screenshots"


@pytest.fixture(scope="module")
def page_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """uvicorn in development mode (``make run``'s command line)."""
    with serving(tmp_path_factory, "uvicorn-page") as server:
        yield server


@pytest.fixture(scope="module")
def production_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """uvicorn with ``DEBUG`` off: tokens only, a real SECRET_KEY."""
    secret = f"test-{uuid.uuid4().hex * 2}"
    with serving(tmp_path_factory, "uvicorn-page-prod", DEBUG="false", SECRET_KEY=secret) as server:
        yield server


@pytest.fixture
async def proxy(page_server: Server) -> AsyncIterator[CutProxy]:
    """A cuttable TCP proxy in front of ``page_server``."""
    port = int(page_server.http_url.rsplit(":", 1)[1])
    started = await CutProxy(port).start()
    yield started
    await started.close()


async def open_page(browser: Browser, base_url: str) -> Page:
    context = await browser.new_context(viewport={"width": 1100, "height": 900})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = await context.new_page()
    await page.goto(f"{base_url}/")
    return page


async def shot(page: Page, name: str) -> Path:
    """A full-page screenshot in screenshots/ (not committed)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0
    return path


async def join(page: Page, room: str, user: str, name: str) -> str:
    await page.fill("#room", room)
    await page.fill("#user", user)
    await page.fill("#name", name)
    await page.click("#join")
    await expect(page.locator("#status")).to_have_attribute("data-state", "open")
    me = await page.text_content("#me")
    assert me and me.startswith("c"), me
    return me


def member(page: Page, name: str) -> Locator:
    return page.locator(f'#members li[data-name="{name}"]')


async def say(page: Page, text: str) -> None:
    await page.fill("#chat-input", text)
    await page.click("#chat-send")


def new_room() -> str:
    return f"page-{uuid.uuid4().hex[:8]}"


async def test_a_crate_spawned_on_one_page_appears_on_the_other(
    page_server: Server, chromium: Browser
) -> None:
    room = new_room()
    page_a = await open_page(chromium, page_server.http_url)
    page_b = await open_page(chromium, page_server.http_url)
    id_a = await join(page_a, room, "alice", "Alice")
    await join(page_b, room, "bob", "Bob")
    await expect(member(page_b, "Alice")).to_have_count(1)
    alice = member(page_a, "Alice")
    x = await alice.get_attribute("data-x")
    z = await alice.get_attribute("data-z")

    await page_a.click("#spawn")

    crate = page_b.locator(f'#entities li[data-owner="{id_a}"]')
    await expect(crate).to_have_count(1)
    await expect(crate).to_have_attribute("data-template", "crate")
    await expect(crate).to_have_attribute("data-x", str(x))  # moved to where Alice stands
    await expect(crate).to_have_attribute("data-z", str(z))
    await shot(page_b, "room-page-crate-seen-by-bob")

    await page_a.click("#entities li button.despawn")
    await expect(crate).to_have_count(0)


async def test_two_pages_see_each_other_move_and_chat(
    page_server: Server, chromium: Browser
) -> None:
    room = new_room()
    page_a = await open_page(chromium, page_server.http_url)
    page_b = await open_page(chromium, page_server.http_url)
    id_a = await join(page_a, room, "alice", "Alice")
    id_b = await join(page_b, room, "bob", "Bob")
    await expect(member(page_a, "Bob")).to_have_count(1)
    x0 = float(await member(page_a, "Alice").get_attribute("data-x") or "nan")
    await page_a.focus("#world")
    await page_a.keyboard.press("ArrowRight")
    await expect(member(page_b, "Alice")).to_have_attribute("data-x", f"{x0 + 0.5:g}")
    await say(page_a, "hi Bob")
    await say(page_b, "hi Alice")
    await expect(page_b.locator(f'#chat-log li.chat[data-from="{id_a}"]')).to_contain_text("hi Bob")
    await expect(page_a.locator(f'#chat-log li.chat[data-from="{id_b}"]')).to_contain_text(
        "hi Alice"
    )
    await expect(page_a.locator("#rtt")).to_contain_text("ms")
    await shot(page_a, "room-page-two-members-alice")
    await shot(page_b, "room-page-two-members-bob")


async def test_the_room_list_shows_live_member_counts(
    page_server: Server, chromium: Browser
) -> None:
    room = new_room()
    page_a = await open_page(chromium, page_server.http_url)
    page_b = await open_page(chromium, page_server.http_url)
    await join(page_a, room, "alice", "Alice")
    await join(page_b, room, "bob", "Bob")
    entry = page_a.locator(f'#rooms li[data-room="{room}"]')
    await page_a.evaluate("window.presencePage.refreshRooms()")
    await expect(entry).to_have_attribute("data-members", "2")
    await page_b.click("#leave")
    await page_a.evaluate("window.presencePage.refreshRooms()")
    await expect(entry).to_have_attribute("data-members", "1")


async def test_the_raw_message_log_opens_and_shows_both_directions(
    page_server: Server, chromium: Browser
) -> None:
    page = await open_page(chromium, page_server.http_url)
    await join(page, new_room(), "alice", "Alice")
    await page.click("#raw-log-panel summary")
    await expect(page.locator('#raw-log li[data-direction="in"]').first).to_contain_text(
        "serverHello"
    )
    await expect(page.locator('#raw-log li[data-direction="out"]').first).to_contain_text(
        "clientHello"
    )
    await shot(page, "room-page-raw-log")


async def test_a_cut_socket_counts_down_reconnects_and_sends_what_was_typed(
    proxy: CutProxy, page_server: Server, chromium: Browser
) -> None:
    room = new_room()
    page_a = await open_page(chromium, proxy.http_url)
    page_b = await open_page(chromium, page_server.http_url)
    await join(page_a, room, "alice", "Alice")
    await join(page_b, room, "bob", "Bob")
    await expect(member(page_a, "Bob")).to_have_count(1)

    proxy.down()
    proxy.cut()
    status = page_a.locator("#status")
    await expect(status).to_have_attribute("data-state", "resuming")
    await expect(status).to_contain_text(" in ")  # "... resuming in N s"
    await shot(page_a, "room-page-cut-counting-down")
    await say(page_a, "typed while cut off")  # kept, and sent once the page is back
    proxy.up()

    await expect(status).to_have_attribute("data-state", "open", timeout=RECONNECT_TIMEOUT_MS)
    line = page_b.locator("#chat-log li.chat", has_text="typed while cut off")
    await expect(line).to_have_count(1)
    mine = page_a.locator("#chat-log li.mine", has_text="typed while cut off")
    await expect(mine).to_have_attribute("data-acked", "true")
    await shot(page_a, "room-page-after-reconnect")


async def test_with_debug_off_a_signed_in_user_joins(
    production_server: Server, chromium: Browser
) -> None:
    staff = create_superuser(production_server, "pageadmin", f"pw-{uuid.uuid4().hex}")
    context = await chromium.new_context(viewport={"width": 1100, "height": 900})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = await context.new_page()
    await page.goto(f"{production_server.http_url}/admin/login/")
    await page.fill("#id_username", staff.username)
    await page.fill("#id_password", staff.password)
    await page.click("input[type=submit]")
    await page.goto(f"{production_server.http_url}/")
    await expect(page.locator("#signed-in-as")).to_have_text(staff.username)
    await expect(page.locator("#user")).to_be_hidden()
    await page.fill("#room", new_room())
    await page.click("#join")
    await expect(page.locator("#status")).to_have_attribute("data-state", "open")
    await expect(member(page, staff.username)).to_have_attribute("data-me", "true")
    await shot(page, "room-page-debug-off-session")


async def test_with_debug_off_the_login_form_joins(
    production_server: Server, chromium: Browser
) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    create_user(production_server, "formuser", password)
    page = await open_page(chromium, production_server.http_url)
    await expect(page.locator("#username")).to_be_visible()
    await page.fill("#room", new_room())
    await page.fill("#username", "formuser")
    await page.fill("#password", password)
    await page.fill("#name", "Form User")
    await page.click("#join")
    await expect(page.locator("#status")).to_have_attribute("data-state", "open")
    await expect(member(page, "Form User")).to_have_attribute("data-me", "true")
    await expect(page.locator("#password")).to_have_value("")  # not kept in the form


async def test_with_debug_off_a_wrong_password_says_so(
    production_server: Server, chromium: Browser
) -> None:
    page = await open_page(chromium, production_server.http_url)
    await page.fill("#username", "nobody")
    await page.fill("#password", "wrong")
    await page.click("#join")
    await expect(page.locator("#error")).to_contain_text("No active account")
    await expect(page.locator("#status")).to_have_attribute("data-state", "closed")


async def test_a_member_muted_by_a_moderator_gets_a_mute_badge_on_every_page(
    page_server: Server, chromium: Browser
) -> None:
    staff = create_superuser(page_server, f"mod-{uuid.uuid4().hex[:6]}", f"pw-{uuid.uuid4().hex}")
    token = obtain_token(page_server.http_url, staff.username, staff.password)
    room = new_room()
    page_a = await open_page(chromium, page_server.http_url)
    page_b = await open_page(chromium, page_server.http_url)
    await join(page_a, room, "alice", "Alice")
    id_b = await join(page_b, room, "bob", "Bob")
    await expect(member(page_a, "Bob")).to_have_attribute("data-muted", "false")

    url = f"{page_server.http_url}/api/rooms/{room}/mute/"
    assert http_post_json(url, {"client_id": id_b, "reason": "echo"}, token=token)[0] == 200

    for page in (page_a, page_b):
        await expect(member(page, "Bob")).to_have_attribute("data-muted", "true")
        await expect(member(page, "Bob").locator(".badge.muted")).to_have_count(1)
    await expect(member(page_a, "Alice").locator(".badge.muted")).to_have_count(0)
    await expect(member(page_a, "Alice").locator(".badge.host")).to_have_count(1)
    await shot(page_a, "room-page-muted-member")
