"""Redis down, paused or slow: the cache routes answer 503 with ``Retry-After`` at once (within
the Redis timeout), items and authentication keep working from PostgreSQL, no stale item is
served afterwards, and the service uses Redis again by itself when it is back — also after a
restart that lost every tenant's ACL user."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

pytestmark = pytest.mark.servers

PLACEMENTS = [
    pytest.param({"tier": "standard"}, id="namespace"),
    pytest.param({"tier": "enterprise"}, id="database"),
]


def _new_item(app: Any, tenant: dict[str, Any], data: dict[str, Any]) -> str:
    created = app.post("/v1/items", json={"data": data}, headers=tenant["headers"])
    assert created.status_code == 201, created.text
    item_id: str = created.json()["id"]
    return item_id


def _eventually(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        outcome = check()
        if outcome or time.monotonic() > deadline:
            return outcome
        time.sleep(0.1)


def _assert_unavailable(answer: Any) -> None:
    assert answer.status_code == 503, answer.text
    assert int(answer.headers["retry-after"]) >= 1
    assert answer.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_redis_stopped_and_restarted(placement: Any, own_redis: Any, app_on: Any) -> None:
    redis_server = own_redis()
    app = app_on(redis_server)
    tenant = app.make_tenant(**placement)
    headers = tenant["headers"]
    item = _new_item(app, tenant, {"v": 1})
    assert app.get(f"/v1/items/{item}", headers=headers).json()["data"] == {"v": 1}
    assert app.put("/v1/cache/k", json={"value": "before"}, headers=headers).status_code == 204

    redis_server.stop()

    _assert_unavailable(app.get("/v1/cache/k", headers=headers))
    _assert_unavailable(app.put("/v1/cache/k", json={"value": 1}, headers=headers))
    _assert_unavailable(app.delete("/v1/cache/k", headers=headers))
    assert app.get("/v1/me", headers=headers).status_code == 200
    assert app.get(f"/v1/items/{item}", headers=headers).json()["data"] == {"v": 1}
    replaced = app.put(f"/v1/items/{item}", json={"data": {"v": 2}}, headers=headers)
    assert replaced.status_code == 200, replaced.text
    assert app.get(f"/v1/items/{item}", headers=headers).json()["data"] == {"v": 2}
    other = _new_item(app, tenant, {"made": "while Redis was down"})
    assert app.get(f"/v1/items/{other}", headers=headers).status_code == 200
    assert app.get("/readyz").status_code == 503

    redis_server.restart()  # no persistence: no keys, and no tenant ACL users either

    assert _eventually(
        lambda: app.put("/v1/cache/k", json={"value": "after"}, headers=headers).status_code == 204
    )
    assert app.get("/v1/cache/k", headers=headers).json() == {"key": "k", "value": "after"}
    assert app.get(f"/v1/items/{item}", headers=headers).json()["data"] == {"v": 2}
    assert app.get(f"/v1/items/{item}", headers=headers).json()["data"] == {"v": 2}
    assert app.get("/readyz").status_code == 200


def test_an_update_made_while_redis_is_unreachable_is_never_served_stale_after(
    own_redis: Any, app_on: Any
) -> None:
    """Redis keeps its data but does not answer for a while (``CLIENT PAUSE``): the update's
    invalidation cannot be sent, and the stale copy is still in Redis when it answers again.
    The service sends the invalidation it kept before it reads the cache again."""
    redis_server = own_redis()
    app = app_on(redis_server)
    tenant = app.make_tenant()
    headers = tenant["headers"]
    item = _new_item(app, tenant, {"v": 1})
    for _ in range(2):  # a miss that fills the cache, then a hit
        assert app.get(f"/v1/items/{item}", headers=headers).json()["data"] == {"v": 1}

    admin = redis_server.client()
    try:
        admin.execute_command("CLIENT", "PAUSE", 1500, "ALL")
        paused_at = time.monotonic()
        replaced = app.put(f"/v1/items/{item}", json={"data": {"v": 2}}, headers=headers)
        assert replaced.status_code == 200, replaced.text
        assert time.monotonic() - paused_at < 1.2, "the update waited for Redis"
        assert app.get(f"/v1/items/{item}", headers=headers).json()["data"] == {"v": 2}
        time.sleep(max(0.0, 1.7 - (time.monotonic() - paused_at)))
        assert admin.ping()
    finally:
        admin.close()

    for _ in range(3):
        assert app.get(f"/v1/items/{item}", headers=headers).json()["data"] == {"v": 2}


def test_a_slow_redis_is_a_prompt_503_on_cache_routes_only(own_redis: Any, app_on: Any) -> None:
    redis_server = own_redis()
    app = app_on(redis_server)  # TENANTGATE_REDIS_TIMEOUT=0.3
    tenant = app.make_tenant()
    headers = tenant["headers"]
    item = _new_item(app, tenant, {"v": 1})
    assert app.put("/v1/cache/k", json={"value": 1}, headers=headers).status_code == 204

    admin = redis_server.client()
    sleeper = threading.Thread(target=lambda: admin.execute_command("DEBUG", "SLEEP", "2"))
    sleeper.start()
    try:
        time.sleep(0.2)
        started = time.monotonic()
        _assert_unavailable(app.get("/v1/cache/k", headers=headers))
        assert time.monotonic() - started < 1.5
        started = time.monotonic()
        assert app.get(f"/v1/items/{item}", headers=headers).json()["data"] == {"v": 1}
        assert app.get("/v1/me", headers=headers).status_code == 200
        assert time.monotonic() - started < 1.5
    finally:
        sleeper.join()
        admin.close()

    assert _eventually(lambda: app.get("/v1/cache/k", headers=headers).status_code == 200)
    assert app.get("/v1/cache/k", headers=headers).json()["value"] == 1


def test_after_a_redis_restart_the_first_readiness_check_is_ready(
    own_redis: Any, app_on: Any
) -> None:
    """Connections pooled before the restart are dead; the first one used is replaced at once
    instead of failing the check (and the load balancer taking the instance out)."""
    redis_server = own_redis()
    app = app_on(redis_server)
    for _ in range(3):
        assert app.get("/readyz").status_code == 200

    redis_server.restart()

    for _ in range(3):
        answer = app.get("/readyz")
        assert answer.status_code == 200, answer.text
