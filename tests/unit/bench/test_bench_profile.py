"""``--profile cpu`` summaries: busy samples by hot path, epoll waits left out."""

from __future__ import annotations

from pathlib import Path

from bench.profile import summarize_collapsed

LOOP = "run_forever (asyncio/base_events.py:607);_run_once (asyncio/base_events.py:1922)"
RECEIVE = (
    f"{LOOP};_read_ready (asyncio/selector_events.py:1009);run_asgi (uvicorn/x.py:1);"
    "PresenceConsumer.websocket_receive (presence/transport/consumer.py:327);"
    "validate_client_message (presence/protocol/validation.py:175)"
)
WRITER = (
    f"{LOOP};Outbound._write_loop (presence/transport/outbound.py:128);"
    "write (asyncio/selector_events.py:1060)"
)
IDLE = f"{LOOP};EpollSelector.select (selectors.py:468)"


def test_busy_samples_are_split_by_path_and_epoll_waits_are_left_out(tmp_path: Path) -> None:
    raw = tmp_path / "uvicorn-size-10x10.txt"
    raw.write_text(f"{RECEIVE} 30\n{WRITER} 10\n{IDLE} 60\n")

    text = "\n".join(summarize_collapsed(raw))

    assert "40 busy samples" in text and "60 idle samples" in text
    assert "75.0%       30  receive: consumer" in text
    assert "25.0%       10  send: outbound writer" in text
    assert "75.0%       30  validate" in text  # the consumer's receive path, by part
