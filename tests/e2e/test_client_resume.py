"""Resume scenarios for the clients (PROTOCOL.md section 6) against a live server.

They exercise the server side of issue 11: resume with session_id +
last_seq, replay, message_id dedup, grace, sessions in Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from presence.client import Backoff, PresenceClient
from tests.clients.tcpcut import CutProxy
from tests.e2e.conftest import Server, server_env, serving, start_server, uvicorn_command
from tests.e2e.jsnode import create_user, ensure_node_modules, js_env, report, run_node_tests
from tests.e2e.test_room_page import RECONNECT_TIMEOUT_MS, join, member, open_page, say, shot

with contextlib.suppress(ImportError):
    from playwright.async_api import expect

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def resume_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """uvicorn in development mode with the in-process layer."""
    with serving(tmp_path_factory, "uvicorn-resume") as server:
        yield server


def test_js_client_resume_scenarios(resume_server: Server) -> None:
    ensure_node_modules()
    username, password = "resumer", f"pw-{uuid.uuid4().hex}"
    create_user(resume_server, username, password)
    done = run_node_tests(["resume.test.js"], js_env(resume_server, username, password))
    assert done.returncode == 0, report(done)


# --- the page ---------------------------------------------------------------


@pytest.fixture
async def page_proxy(resume_server: Server) -> AsyncIterator[CutProxy]:
    proxy = await CutProxy(port_of(resume_server)).start()
    yield proxy
    await proxy.close()


def port_of(server: Server) -> int:
    return int(server.http_url.rsplit(":", 1)[1])


async def _room_pages(browser: Browser, url_a: str, url_b: str) -> tuple[Page, Page]:
    room = f"resume-{uuid.uuid4().hex[:8]}"
    pages = []
    for url, user in ((url_a, "alice"), (url_b, "bob")):
        page = await open_page(browser, url)
        await join(page, room, user, user.title())
        pages.append(page)
    await expect(member(pages[0], "Bob")).to_have_count(1)
    return pages[0], pages[1]


async def _cut_chat_and_resume(proxy: CutProxy, page_a: Page, page_b: Page) -> None:
    """Cut A off; B and A each say a line meanwhile; A comes back resumed with both, once."""
    proxy.down()
    proxy.cut()
    await expect(page_a.locator("#status")).to_have_attribute("data-state", "resuming")
    await say(page_b, "said while alice was away")
    await say(page_a, "typed while cut off")
    proxy.up()
    await expect(page_a.locator("#chat-log li.notice")).to_contain_text(
        "resumed", timeout=RECONNECT_TIMEOUT_MS
    )
    for page, text in (
        (page_a, "said while alice was away"),
        (page_b, "typed while cut off"),
        (page_a, "typed while cut off"),
    ):
        await expect(page.locator("#chat-log li.chat", has_text=text)).to_have_count(1)
    await expect(page_b.locator("#chat-log li", has_text="Alice left")).to_have_count(0)


async def test_page_resumes_after_a_cut_without_losing_a_chat_line(
    page_proxy: CutProxy, resume_server: Server, chromium: Browser
) -> None:
    page_a, page_b = await _room_pages(chromium, page_proxy.http_url, resume_server.http_url)
    await _cut_chat_and_resume(page_proxy, page_a, page_b)
    await shot(page_a, "room-page-resumed")


async def test_page_resumes_on_a_restarted_server_with_redis(
    tmp_path: Path, redis_url: str, chromium: Browser
) -> None:
    """Sessions live in Redis: the server process is killed and another one takes over."""
    env = server_env(tmp_path, redis_url=redis_url, redis_prefix=f"gwresume-{uuid.uuid4().hex[:8]}")
    first = start_server("uvicorn-redis-1", tmp_path, uvicorn_command, env)
    second: Server | None = None
    proxy = await CutProxy(port_of(first)).start()
    try:
        page_a, page_b = await _room_pages(chromium, proxy.http_url, proxy.http_url)
        proxy.down()
        first.process.kill()  # no drain, no goodbye: as a crash
        first.process.wait(timeout=10)
        second = start_server(
            "uvicorn-redis-2", tmp_path, uvicorn_command, env, migrate_first=False
        )
        proxy.target_port = port_of(second)
        await expect(page_a.locator("#status")).not_to_have_attribute("data-state", "open")
        await say(page_a, "typed while the server was down")
        proxy.up()
        await expect(page_a.locator("#chat-log li.notice")).to_contain_text(
            "resumed", timeout=RECONNECT_TIMEOUT_MS
        )
        await expect(
            page_b.locator("#chat-log li.chat", has_text="typed while the server was down")
        ).to_have_count(1, timeout=RECONNECT_TIMEOUT_MS)
        await shot(page_a, "room-page-resumed-after-restart")
    finally:
        await proxy.close()
        first.stop()
        if second is not None:
            second.stop()


# --- the Python client --------------------------------------------------------


@pytest.fixture
async def py_pair(
    resume_server: Server, page_proxy: CutProxy
) -> AsyncIterator[tuple[PresenceClient, PresenceClient, CutProxy]]:
    """Alice through the cuttable proxy, Bob direct, in a new room."""
    room = f"pyresume-{uuid.uuid4().hex[:8]}"
    fast = {"backoff": Backoff(initial_s=0.1, max_s=1.0)}
    alice = PresenceClient(page_proxy.ws_url, room, user_id="alice", **fast)  # type: ignore[arg-type]
    bob = PresenceClient(resume_server.ws_url, room, user_id="bob", **fast)  # type: ignore[arg-type]
    await alice.connect(timeout=5)
    await bob.connect(timeout=5)
    await _until(lambda: len(alice.room.members) == 2)
    yield alice, bob, page_proxy
    await alice.close()
    await bob.close()


async def _until(test: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not test():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def _count(client: PresenceClient, text: str) -> int:
    return [line.message for line in client.room.chat].count(text)


async def test_resume_after_cut_socket_replays_missed_messages(
    py_pair: tuple[PresenceClient, PresenceClient, CutProxy],
) -> None:
    alice, bob, proxy = py_pair
    me = alice.room.me
    left: list[str] = []
    bob.on("leave", lambda detail: left.append(detail["client_id"]))
    proxy.down()
    proxy.cut()
    await asyncio.wait_for(bob.spawn("crate-1", "crate"), 5)
    await asyncio.wait_for(bob.chat("missed 1"), 5)
    await asyncio.wait_for(bob.chat("missed 2"), 5)
    back = asyncio.ensure_future(alice.wait_for("hello", timeout=10))
    proxy.up()
    assert (await back).resumed
    assert alice.room.me == me
    await _until(lambda: _count(alice, "missed 1") + _count(alice, "missed 2") == 2)
    assert "crate-1" in alice.room.entities
    assert left == []


async def test_resent_message_is_applied_once(
    py_pair: tuple[PresenceClient, PresenceClient, CutProxy],
) -> None:
    alice, bob, proxy = py_pair
    proxy.deafen()  # the server applies the line; its Ack is lost
    sent = asyncio.ensure_future(alice.chat("exactly once"))
    await _until(lambda: _count(bob, "exactly once") == 1)
    proxy.down()
    proxy.cut()
    back = asyncio.ensure_future(alice.wait_for("hello", timeout=10))
    proxy.up()
    assert (await back).resumed
    await asyncio.wait_for(sent, 10)
    await asyncio.wait_for(bob.chat("after the resume"), 5)
    await _until(lambda: _count(alice, "after the resume") == 1)
    assert _count(bob, "exactly once") == 1
