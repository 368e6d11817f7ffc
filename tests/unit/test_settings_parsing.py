"""Environment parsing (graphwiz/envparse.py) and the PRESENCE settings dict (presence/conf.py)."""

from __future__ import annotations

import dataclasses
import math

import pytest
from django.core.exceptions import ImproperlyConfigured

from graphwiz.envparse import env_bool, env_float, env_int, env_list
from presence.conf import DEFAULTS, MAX_CHAT_HISTORY, PresenceSettings, build
from presence.protocol.frameguard import FrameLimits

# --- env_bool -----------------------------------------------------------------


@pytest.mark.parametrize("default", [True, False])
def test_env_bool_missing_is_the_default(default: bool) -> None:
    assert env_bool({}, "DEBUG", default) is default


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "True", "yes", "on", " on "])
def test_env_bool_true_spellings(raw: str) -> None:
    assert env_bool({"DEBUG": raw}, "DEBUG", False) is True


@pytest.mark.parametrize("raw", ["0", "false", "FALSE", "no", "off", " Off "])
def test_env_bool_false_spellings(raw: str) -> None:
    assert env_bool({"DEBUG": raw}, "DEBUG", True) is False


@pytest.mark.parametrize("raw", ["maybe", "2", "tru", "y"])
def test_env_bool_invalid_names_the_variable_and_value(raw: str) -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        env_bool({"DEBUG": raw}, "DEBUG", True)

    assert "DEBUG" in str(refused.value)
    assert repr(raw) in str(refused.value)


# --- env_int ------------------------------------------------------------------


@pytest.mark.parametrize("env", [{}, {"MESSAGE_QUEUE_SIZE": ""}, {"MESSAGE_QUEUE_SIZE": "  "}])
def test_env_int_missing_or_blank_is_the_default(env: dict[str, str]) -> None:
    assert env_int(env, "MESSAGE_QUEUE_SIZE", 1000) == 1000


@pytest.mark.parametrize(("raw", "value"), [("42", 42), (" 42 ", 42), ("0", 0), ("+7", 7)])
def test_env_int_valid(raw: str, value: int) -> None:
    assert env_int({"MESSAGE_QUEUE_SIZE": raw}, "MESSAGE_QUEUE_SIZE", 1000) == value


@pytest.mark.parametrize("raw", ["abc", "1.5", "1e3", "10 messages", "0x10"])
def test_env_int_invalid_names_the_variable(raw: str) -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        env_int({"MESSAGE_QUEUE_SIZE": raw}, "MESSAGE_QUEUE_SIZE", 1000)

    assert "MESSAGE_QUEUE_SIZE" in str(refused.value)
    assert "integer" in str(refused.value)


def test_env_int_at_the_minimum_is_accepted() -> None:
    assert env_int({"MESSAGE_QUEUE_SIZE": "1"}, "MESSAGE_QUEUE_SIZE", 1000, minimum=1) == 1


def test_env_int_below_the_minimum_names_the_variable_and_minimum() -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        env_int({"MESSAGE_QUEUE_SIZE": "0"}, "MESSAGE_QUEUE_SIZE", 1000, minimum=1)

    assert "MESSAGE_QUEUE_SIZE" in str(refused.value)
    assert "at least 1" in str(refused.value)


def test_env_int_refuses_negatives_by_default() -> None:
    with pytest.raises(ImproperlyConfigured, match="PORT"):
        env_int({"PORT": "-1"}, "PORT", 8000)


# --- env_float ----------------------------------------------------------------


@pytest.mark.parametrize(
    "env", [{}, {"MESSAGE_RETRY_INTERVAL": ""}, {"MESSAGE_RETRY_INTERVAL": " "}]
)
def test_env_float_missing_or_blank_is_the_default(env: dict[str, str]) -> None:
    assert env_float(env, "MESSAGE_RETRY_INTERVAL", 5.0) == 5.0


@pytest.mark.parametrize(
    ("raw", "value"), [("2.5", 2.5), (" 3 ", 3.0), ("1e-3", 0.001), ("0", 0.0)]
)
def test_env_float_valid(raw: str, value: float) -> None:
    assert env_float({"MESSAGE_RETRY_INTERVAL": raw}, "MESSAGE_RETRY_INTERVAL", 5.0) == value


@pytest.mark.parametrize("raw", ["abc", "5s", "1,5"])
def test_env_float_invalid_names_the_variable(raw: str) -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        env_float({"MESSAGE_RETRY_INTERVAL": raw}, "MESSAGE_RETRY_INTERVAL", 5.0)

    assert "MESSAGE_RETRY_INTERVAL" in str(refused.value)
    assert "number" in str(refused.value)


@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_env_float_non_finite_is_refused(raw: str) -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        env_float({"MESSAGE_RETRY_INTERVAL": raw}, "MESSAGE_RETRY_INTERVAL", 5.0)

    assert "MESSAGE_RETRY_INTERVAL" in str(refused.value)
    assert "finite" in str(refused.value)


def test_env_float_at_the_minimum_is_accepted() -> None:
    env = {"RATE_LIMIT_WINDOW_SECONDS": "0.001"}

    assert env_float(env, "RATE_LIMIT_WINDOW_SECONDS", 60.0, minimum=0.001) == 0.001


def test_env_float_below_the_minimum_names_the_variable() -> None:
    env = {"RATE_LIMIT_WINDOW_SECONDS": "0.0009"}

    with pytest.raises(ImproperlyConfigured) as refused:
        env_float(env, "RATE_LIMIT_WINDOW_SECONDS", 60.0, minimum=0.001)

    assert "RATE_LIMIT_WINDOW_SECONDS" in str(refused.value)
    assert ">= 0.001" in str(refused.value)


def test_env_float_refuses_negatives_by_default() -> None:
    with pytest.raises(ImproperlyConfigured, match="MESSAGE_RETRY_INTERVAL"):
        env_float({"MESSAGE_RETRY_INTERVAL": "-0.5"}, "MESSAGE_RETRY_INTERVAL", 5.0)


# --- env_list -----------------------------------------------------------------


def test_env_list_missing_is_a_copy_of_the_default() -> None:
    default = ["localhost"]

    value = env_list({}, "ALLOWED_HOSTS", default)
    value.append("example.com")

    assert default == ["localhost"]


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("a.example", ["a.example"]),
        ("a.example,b.example", ["a.example", "b.example"]),
        (" a.example , b.example ", ["a.example", "b.example"]),
        ("a.example,,b.example,", ["a.example", "b.example"]),
        ("", []),
        (" , ", []),
    ],
)
def test_env_list_splits_on_commas_and_drops_blanks(raw: str, value: list[str]) -> None:
    assert env_list({"ALLOWED_HOSTS": raw}, "ALLOWED_HOSTS", ["localhost"]) == value


# --- conf.build: the PRESENCE dict ------------------------------------------------

NUMBERS = sorted(
    name
    for name, value in DEFAULTS.items()
    if type(value) in (int, float)
    and name
    not in (
        "HEARTBEAT_INTERVAL_MS",
        "TICK_HZ",
        "TICK_FAST_HZ",
        "RTT_PROBE_SECONDS",
        "CHAT_HISTORY",
        "LEGACY_DETECT_SECONDS",
        "MESSAGE_MAX_RETRIES",
    )
)


def test_empty_presence_dict_gives_the_defaults() -> None:
    assert build({}) == PresenceSettings()


def test_defaults_table_lists_every_setting() -> None:
    assert set(DEFAULTS) == {f.name for f in dataclasses.fields(PresenceSettings)}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MESSAGE_QUEUE_SIZE", 3),
        ("MESSAGE_RETRY_INTERVAL", 0.05),
        ("LATENCY_TRACKING_ENABLED", False),
        ("REDIS_CHANNEL_PREFIX", "gwtest"),
        ("HEARTBEAT_INTERVAL_MS", 0),
        ("HEARTBEAT_INTERVAL_MS", 15000),
        ("TICK_HZ", 0.0),
        ("TICK_HZ", 60.0),
    ],
)
def test_override_replaces_the_default(name: str, value: object) -> None:
    assert getattr(build({name: value}), name) == value


def test_override_leaves_the_other_defaults() -> None:
    built = build({"MESSAGE_QUEUE_SIZE": 3})

    assert dataclasses.replace(built, MESSAGE_QUEUE_SIZE=1000) == PresenceSettings()


def test_int_is_accepted_for_a_float_setting() -> None:
    assert build({"RATE_LIMIT_WINDOW_SECONDS": 30}).RATE_LIMIT_WINDOW_SECONDS == 30


def test_max_frame_bytes_sets_the_field_limit() -> None:
    assert build({"MAX_FRAME_BYTES": 1024}).field_limits.frame_bytes == 1024


def test_frame_limit_settings_set_the_frame_guard() -> None:
    built = build(
        {"WS_CONTROL_FRAME_LIMIT": 5, "WS_CONTROL_FRAME_WINDOW_SECONDS": 2, "WS_MAX_FRAGMENTS": 7}
    )

    assert built.frame_limits == FrameLimits(control_frames=5, control_window=2.0, fragments=7)


def test_unknown_key_is_rejected_by_name() -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        build({"MESSAGE_QUEUE_SIZ": 10})

    assert "MESSAGE_QUEUE_SIZ" in str(refused.value)


def test_all_unknown_keys_are_named_sorted() -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        build({"ZETA": 1, "ALPHA": 2, "MESSAGE_QUEUE_SIZE": 3})

    assert "ALPHA, ZETA" in str(refused.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MESSAGE_QUEUE_SIZE", "1000"),
        ("MESSAGE_QUEUE_SIZE", 10.0),
        ("MESSAGE_QUEUE_SIZE", None),
        ("MESSAGE_QUEUE_SIZE", True),
        ("HEARTBEAT_INTERVAL_MS", False),
        ("RATE_LIMIT_WINDOW_SECONDS", "60"),
        ("RATE_LIMIT_WINDOW_SECONDS", True),
        ("LATENCY_TRACKING_ENABLED", 1),
        ("LATENCY_TRACKING_ENABLED", "true"),
        ("REDIS_CHANNEL_PREFIX", 5),
        ("REDIS_CHANNEL_PREFIX", b"graphwiz"),
    ],
)
def test_wrong_type_is_rejected_naming_setting_and_type(name: str, value: object) -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        build({name: value})

    assert name in str(refused.value)
    assert f"must be {type(DEFAULTS[name]).__name__}" in str(refused.value)


@pytest.mark.parametrize("value", [0, -1])
@pytest.mark.parametrize("name", NUMBERS)
def test_non_positive_number_is_rejected(name: str, value: int) -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        build({name: value})

    assert name in str(refused.value)
    assert "positive" in str(refused.value)


@pytest.mark.parametrize("name", NUMBERS)
def test_smallest_positive_number_is_accepted(name: str) -> None:
    smallest = 1 if type(DEFAULTS[name]) is int else 0.001
    # The heartbeat must stay shorter than the lease (tested below).
    others: dict[str, float] = {}
    if name == "REGISTRY_LEASE_SECONDS":
        others = {"REGISTRY_HEARTBEAT_SECONDS": 0.0005}
    if name == "PRESENCE_RESUME_WINDOW_SECONDS":  # the grace may not be longer (tested below)
        others = {"PRESENCE_LEAVE_GRACE_SECONDS": 0.001}

    assert getattr(build({name: smallest, **others}), name) == smallest


@pytest.mark.parametrize(("heartbeat", "lease"), [(15.0, 15.0), (20.0, 15.0), (2.0, 1.0)])
def test_a_heartbeat_not_shorter_than_the_lease_is_rejected(heartbeat: float, lease: float) -> None:
    with pytest.raises(ImproperlyConfigured, match="REGISTRY_HEARTBEAT_SECONDS"):
        build({"REGISTRY_HEARTBEAT_SECONDS": heartbeat, "REGISTRY_LEASE_SECONDS": lease})


def test_a_heartbeat_shorter_than_the_lease_is_accepted() -> None:
    conf = build({"REGISTRY_HEARTBEAT_SECONDS": 1.0, "REGISTRY_LEASE_SECONDS": 3.0})
    assert (conf.REGISTRY_HEARTBEAT_SECONDS, conf.REGISTRY_LEASE_SECONDS) == (1.0, 3.0)


def test_nan_float_setting_is_rejected() -> None:
    # NaN compares false with everything, so it is not caught by "value <= 0".
    with pytest.raises(ImproperlyConfigured, match="MESSAGE_RETRY_INTERVAL"):
        build({"MESSAGE_RETRY_INTERVAL": math.nan})


def test_negative_heartbeat_interval_is_rejected() -> None:
    # 0 means "no heartbeat"; a negative value cannot go into the uint32
    # ServerHello.heartbeat_interval_ms and would fail every connection.
    with pytest.raises(ImproperlyConfigured, match="HEARTBEAT_INTERVAL_MS"):
        build({"HEARTBEAT_INTERVAL_MS": -1})


def test_rtt_probe_interval_of_zero_turns_probes_off_and_negative_is_rejected() -> None:
    assert build({"RTT_PROBE_SECONDS": 0}).RTT_PROBE_SECONDS == 0
    with pytest.raises(ImproperlyConfigured, match="RTT_PROBE_SECONDS"):
        build({"RTT_PROBE_SECONDS": -1.0})


def test_chat_history_of_zero_is_off_and_it_is_bounded() -> None:
    assert build({"CHAT_HISTORY": 0}).CHAT_HISTORY == 0
    assert build({"CHAT_HISTORY": MAX_CHAT_HISTORY}).CHAT_HISTORY == MAX_CHAT_HISTORY
    with pytest.raises(ImproperlyConfigured, match=r"CHAT_HISTORY'\] must be 0 to 500"):
        build({"CHAT_HISTORY": MAX_CHAT_HISTORY + 1})
    with pytest.raises(ImproperlyConfigured, match="CHAT_HISTORY"):
        build({"CHAT_HISTORY": -1})


def test_negative_tick_rate_is_rejected() -> None:
    # 0 means "send poses at once"; a negative rate has no meaning.
    with pytest.raises(ImproperlyConfigured, match="TICK_HZ"):
        build({"TICK_HZ": -1.0})


def test_max_retries_may_be_zero_but_not_negative() -> None:
    assert build({"MESSAGE_MAX_RETRIES": 0}).MESSAGE_MAX_RETRIES == 0
    with pytest.raises(ImproperlyConfigured) as refused:
        build({"MESSAGE_MAX_RETRIES": -1})
    assert "MESSAGE_MAX_RETRIES" in str(refused.value)


def test_a_grace_longer_than_the_resume_window_is_refused_in_one_line() -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        build({"PRESENCE_LEAVE_GRACE_SECONDS": 61.0, "PRESENCE_RESUME_WINDOW_SECONDS": 60.0})
    text = str(refused.value)
    assert "PRESENCE_LEAVE_GRACE_SECONDS" in text and "PRESENCE_RESUME_WINDOW_SECONDS" in text
    assert "\n" not in text
