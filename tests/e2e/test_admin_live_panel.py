"""The room's admin page in a real Chromium: one live presence panel that fits and refreshes.

A uvicorn (the server ``make run`` starts) with a superuser; members join over
WebSockets; the staff user signs in through the login form. The panel must fit
a 1280 x 800 window (and 1400 px) without horizontal overflow, show who is host
and who is muted, and follow joins, leaves, kicks and mutes without a reload.
Screenshots go to the test's temporary directory.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.clients.live import AdminSession, Client, ClientPool, eventually
from tests.e2e.conftest import (
    Server,
    StaffUser,
    create_superuser,
    serving,
)

# A missing Playwright is reported by the `chromium` fixture (tests/e2e/conftest.py).
with contextlib.suppress(ImportError):
    from playwright.async_api import expect

if TYPE_CHECKING:
    from playwright.async_api import Browser, Locator, Page

pytestmark = pytest.mark.e2e

UI_TIMEOUT_MS = 8_000  # a refresh comes every 2 s; room for a busy machine
LONG_NAME = ("Bartholomew" * 6)[:64]  # the longest name allowed, and no space to wrap at
OVERFLOW_JS = """
() => {
  const doc = document.documentElement;
  const panel = document.getElementById('live-presence');
  const box = panel.getBoundingClientRect();
  const parts = [...panel.querySelectorAll('button, input, td, th')]
    .map(e => e.getBoundingClientRect());
  return {
    page: [doc.scrollWidth, doc.clientWidth],
    panel: [panel.scrollWidth, panel.clientWidth],
    panelRight: box.right,
    viewport: window.innerWidth,
    widestPart: Math.max(...parts.map(r => r.right)),
  };
}
"""


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """uvicorn with the in-process channel layer and its own SQLite file."""
    with serving(tmp_path_factory, "uvicorn-admin") as server:
        yield server


@pytest.fixture(scope="module")
def staff(admin_server: Server) -> StaffUser:
    return create_superuser(admin_server, "staff", f"pw-{uuid.uuid4().hex}")


def room_page(room: str) -> str:
    return f"/admin/presence/room/{room}/change/"


async def room_is_recorded(server: Server, staff: StaffUser, room: str) -> None:
    """Wait until the room's row exists (history is written in batches)."""
    admin = AdminSession(server.http_url)
    admin.login(staff.username, staff.password)
    await eventually(lambda: admin.get(room_page(room))[0] == 200 or None)


async def signed_in_page(
    browser: Browser, server: Server, staff: StaffUser, room: str, *, width: int = 1280
) -> Page:
    """A page signed in as ``staff`` through the login form, at the room's page."""
    context = await browser.new_context(viewport={"width": width, "height": 800})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = await context.new_page()
    await page.goto(f"{server.http_url}/admin/login/?next={room_page(room)}")
    await page.fill("#id_username", staff.username)
    await page.fill("#id_password", staff.password)
    await page.click("input[type=submit]")
    await expect(page.locator("#live-presence")).to_be_visible()
    return page


def row(page: Page, client: Client) -> Locator:
    return page.locator(f'#live-presence tr.live-connection[data-client-id="{client.client_id}"]')


async def fits(page: Page) -> dict[str, Any]:
    """Measure the panel; fail if anything sticks out to the right."""
    sizes: dict[str, Any] = await page.evaluate(OVERFLOW_JS)
    assert sizes["page"][0] <= sizes["page"][1], f"the page scrolls sideways: {sizes}"
    assert sizes["panel"][0] <= sizes["panel"][1], f"the panel overflows: {sizes}"
    assert sizes["panelRight"] <= sizes["viewport"], f"the panel leaves the screen: {sizes}"
    assert sizes["widestPart"] <= sizes["panelRight"] + 0.5, f"a control sticks out: {sizes}"
    return sizes


async def join_members(server: Server, clients: ClientPool, room: str) -> list[Client]:
    alice = await clients.join(server.ws_url, room, "alice", display_name="Alice")
    bob = await clients.join(server.ws_url, room, "bob", display_name=LONG_NAME)
    carol = await clients.join(
        server.ws_url, room, "carol", display_name="Carol", client_id="quest-3-headset"
    )
    return [alice, bob, carol]


@pytest.mark.parametrize("width", [1280, 1400])
async def test_the_panel_fits_the_window_and_shows_host_and_muted(
    admin_server: Server,
    staff: StaffUser,
    clients: ClientPool,
    chromium: Browser,
    tmp_path: Path,
    width: int,
) -> None:
    room = f"panel-{uuid.uuid4().hex[:8]}"
    alice, bob, carol = await join_members(admin_server, clients, room)
    await room_is_recorded(admin_server, staff, room)
    page = await signed_in_page(chromium, admin_server, staff, room, width=width)
    await expect(page.locator("#live-presence tr.live-connection")).to_have_count(3)

    await row(page, bob).get_by_role("button", name="Mute").click()  # posts, comes back

    await expect(row(page, bob)).to_have_attribute("data-muted", "true")
    await expect(row(page, bob).locator(".badge-muted")).to_be_visible()
    await expect(row(page, bob).get_by_role("button", name="Unmute")).to_be_visible()
    await expect(row(page, alice)).to_have_attribute("data-host", "true")
    await expect(row(page, alice).locator(".badge-host")).to_be_visible()
    for member in (alice, carol):
        await expect(row(page, member)).to_have_attribute("data-muted", "false")
        await expect(row(page, member).locator(".badge-muted")).to_have_count(0)
    await expect(row(page, carol)).to_contain_text("quest-3-headset")
    # Exactly one table of who is here: no second list that could disagree.
    await expect(page.locator("#live-presence table")).to_have_count(1)
    await expect(page.get_by_text("Present now", exact=False)).to_have_count(0)

    await fits(page)
    shot = tmp_path / f"admin-live-panel-{width}.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0


async def test_the_panel_follows_joins_leaves_mutes_and_kicks_without_a_reload(
    admin_server: Server, staff: StaffUser, clients: ClientPool, chromium: Browser
) -> None:
    room = f"panel-{uuid.uuid4().hex[:8]}"
    alice, bob, carol = await join_members(admin_server, clients, room)
    await room_is_recorded(admin_server, staff, room)
    page = await signed_in_page(chromium, admin_server, staff, room)
    await expect(page.locator("#live-presence tr.live-connection")).to_have_count(3)
    await page.evaluate("() => { window.notReloaded = true; }")
    reason = row(page, carol).locator("input[name=reason]")
    await reason.fill("typed before the refreshes")  # a refresh must not wipe it

    dave = await clients.join(admin_server.ws_url, room, "dave", display_name="Dave")
    await expect(row(page, dave)).to_contain_text("Dave")
    await alice.close()  # the host leaves: bob is host next
    await expect(row(page, alice)).to_have_count(0)
    await expect(row(page, bob)).to_have_attribute("data-host", "true")

    other = AdminSession(admin_server.http_url)  # another moderator, elsewhere
    other.login(staff.username, staff.password)
    status, _ = other.post(
        f"/admin/presence/room/{room}/moderate/",
        {"action": "mute", "target_client_id": carol.client_id},
    )
    assert status == 200
    await expect(row(page, carol)).to_have_attribute("data-muted", "true")
    status, _ = other.post(
        f"/admin/presence/room/{room}/moderate/",
        {"action": "kick", "target_client_id": dave.client_id},
    )
    assert status == 200
    await expect(row(page, dave)).to_have_count(0)

    assert await page.evaluate("() => window.notReloaded === true")
    await expect(reason).to_have_value("typed before the refreshes")
    await expect(page.locator("#live-presence tr.live-connection")).to_have_count(2)
    await fits(page)
