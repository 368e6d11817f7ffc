"""``/api/token/`` and ``/api/token/refresh/`` are throttled per address and per username.

Tiny rates (3 per username, 5 per address, 4 refreshes per address, per
minute) and a fake clock injected as the throttles' ``timer``: no test sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.test import Client

from presence.web.api import throttles
from tests.conftest import closed_redis_url

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-9"
PER_USERNAME, PER_IP, REFRESH_PER_IP = 3, 5, 4
RATES = {
    "token_ip": f"{PER_IP}/minute",
    "token_username": f"{PER_USERNAME}/minute",
    "token_refresh_ip": f"{REFRESH_PER_IP}/minute",
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def _tiny_rates(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": RATES}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(throttles.PresenceRateThrottle, "timer", staticmethod(fake))
    return fake


@pytest.fixture
def user() -> Any:
    return get_user_model().objects.create_user("dora", password=PASSWORD)


def obtain(username: str, password: str, *, address: str = "127.0.0.1", **headers: str) -> Any:
    return Client(REMOTE_ADDR=address).post(
        "/api/token/",
        {"username": username, "password": password},
        content_type="application/json",
        headers=headers,
    )


def refresh(token: str, *, address: str = "127.0.0.1") -> Any:
    return Client(REMOTE_ADDR=address).post(
        "/api/token/refresh/", {"refresh": token}, content_type="application/json"
    )


def statuses(responses: list[Any]) -> list[int]:
    return [response.status_code for response in responses]


# --- per username ----------------------------------------------------------------


def test_wrong_passwords_for_one_username_are_answered_until_its_limit(
    clock: FakeClock, user: Any
) -> None:
    answers = [obtain("dora", f"guess-{i}", address=f"198.51.100.{i}") for i in range(6)]

    assert statuses(answers) == [401] * PER_USERNAME + [429] * 3
    assert int(answers[-1]["Retry-After"]) == 60
    assert "access" not in answers[-1].json()


def test_the_username_limit_holds_for_the_right_password_too(clock: FakeClock, user: Any) -> None:
    for i in range(PER_USERNAME):
        obtain("dora", f"guess-{i}", address=f"198.51.100.{i}")

    assert obtain("dora", PASSWORD, address="198.51.100.99").status_code == 429


def test_case_and_spaces_do_not_make_a_new_username(clock: FakeClock, user: Any) -> None:
    spellings = ["dora", "Dora", " DORA ", "dOrA"]
    answers = [obtain(name, "wrong", address=f"198.51.100.{i}") for i, name in enumerate(spellings)]

    assert statuses(answers) == [401] * PER_USERNAME + [429]


def test_the_username_window_slides_on_the_injected_clock(clock: FakeClock, user: Any) -> None:
    for i in range(PER_USERNAME):
        obtain("dora", "wrong", address=f"198.51.100.{i}")
        clock.advance(10)
    refused = obtain("dora", PASSWORD, address="198.51.100.50")
    clock.advance(60 - 3 * 10 + 0.001)  # the first attempt leaves the window
    answered = obtain("dora", PASSWORD, address="198.51.100.51")

    assert (refused.status_code, int(refused["Retry-After"])) == (429, 30)
    assert answered.status_code == 200


def test_a_username_sent_as_a_json_number_counts_against_that_username(
    clock: FakeClock,
) -> None:
    # The serializer reads {"username": 424242} as "424242" and signs that user
    # in; the throttle once skipped anything but a string, so numeric usernames
    # could be guessed without a per-username limit.
    get_user_model().objects.create_user("424242", password=PASSWORD)

    def guess(username: object, i: int) -> Any:
        return Client(REMOTE_ADDR=f"198.51.100.{i}").post(
            "/api/token/",
            {"username": username, "password": "wrong"},
            content_type="application/json",
        )

    answers = [guess(424242, i) for i in range(PER_USERNAME)] + [guess("424242", 9)]

    assert statuses(answers) == [401] * PER_USERNAME + [429]


# --- per address -----------------------------------------------------------------


def test_one_address_is_limited_across_usernames(clock: FakeClock, user: Any) -> None:
    answers = [obtain(f"user-{i}", "wrong", address="203.0.113.9") for i in range(PER_IP + 2)]

    assert statuses(answers) == [401] * PER_IP + [429] * 2
    assert int(answers[-1]["Retry-After"]) == 60


def test_another_address_is_not_limited_by_the_first(clock: FakeClock, user: Any) -> None:
    for i in range(PER_IP):
        obtain(f"user-{i}", "wrong", address="203.0.113.9")

    assert obtain("dora", PASSWORD, address="203.0.113.10").status_code == 200


def test_a_forged_x_forwarded_for_does_not_make_a_new_address(clock: FakeClock, user: Any) -> None:
    # No TRUSTED_PROXIES: DRF's own get_ident would key on the forged header.
    answers = [
        obtain(f"user-{i}", "wrong", address="203.0.113.9", x_forwarded_for=f"192.0.2.{i}")
        for i in range(PER_IP + 1)
    ]

    assert statuses(answers)[-1] == 429


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(
    clock: FakeClock, user: Any, settings: Any
) -> None:
    settings.PRESENCE = {**settings.PRESENCE, "TRUSTED_PROXIES": ["10.0.0.2"]}
    for i in range(PER_IP):
        obtain(f"user-{i}", "wrong", address="10.0.0.2", x_forwarded_for="192.0.2.1")

    blocked = obtain("x", "wrong", address="10.0.0.2", x_forwarded_for="192.0.2.1")
    other = obtain("x", "wrong", address="10.0.0.2", x_forwarded_for="192.0.2.2")

    assert (blocked.status_code, other.status_code) == (429, 401)


def test_refreshes_are_limited_per_address(clock: FakeClock, user: Any) -> None:
    token = obtain("dora", PASSWORD).json()["refresh"]

    answers = [refresh(token, address="203.0.113.20") for _ in range(REFRESH_PER_IP + 1)]

    assert statuses(answers) == [200] * REFRESH_PER_IP + [429]
    assert int(answers[-1]["Retry-After"]) == 60


def test_an_unreadable_body_is_counted_by_address_and_answered_400(clock: FakeClock) -> None:
    answers = [
        Client(REMOTE_ADDR="203.0.113.30").post(
            "/api/token/", "{not json", content_type="application/json"
        )
        for _ in range(PER_IP + 1)
    ]

    assert statuses(answers) == [400] * PER_IP + [429]


# --- across instances: Redis -------------------------------------------------------


@pytest.fixture
def redis_throttle_cache(settings: Any, redis_url: str, redis_prefix: str) -> Iterator[redis.Redis]:
    """The ``throttle`` cache in Redis under the test's prefix, as with ``REDIS_URL``."""
    settings.CACHES = {
        **settings.CACHES,
        "throttle": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": f"{redis_prefix}:throttle",
        },
    }
    client = redis.Redis.from_url(redis_url)
    yield client
    keys = list(client.scan_iter(match=f"{redis_prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_with_redis_the_count_is_shared_by_every_instance(
    clock: FakeClock, user: Any, redis_throttle_cache: redis.Redis, redis_prefix: str
) -> None:
    for i in range(PER_USERNAME):
        obtain("dora", "wrong", address=f"198.51.100.{i}")
    # Another instance: its own connections to the same Redis, no memory of ours.
    caches["throttle"].close()
    del caches["throttle"]

    assert obtain("dora", PASSWORD, address="198.51.100.77").status_code == 429
    assert list(redis_throttle_cache.scan_iter(match=f"{redis_prefix}:throttle:*"))


def test_an_unreachable_redis_refuses_sign_in_with_503(
    clock: FakeClock, user: Any, settings: Any
) -> None:
    settings.CACHES = {
        **settings.CACHES,
        "throttle": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": closed_redis_url(),
            "OPTIONS": {"socket_connect_timeout": 1},
        },
    }

    response = obtain("dora", PASSWORD)

    assert response.status_code == 503
    assert "access" not in response.json()
