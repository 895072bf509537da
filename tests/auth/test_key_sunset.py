"""A response made with a key that expires within 7 days says so — `Deprecation` (RFC 9745)
and `Sunset` (RFC 8594) — so a client notices before it breaks; other keys' responses carry
neither."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from tenantgate.identity.key_cache import sunset_headers

pytestmark = pytest.mark.servers


def _key(service: Any, admin_headers: dict[str, str], tenant: Any, **body: Any) -> dict[str, str]:
    answer = service.post(f"/admin/v1/tenants/{tenant.id}/keys", json=body, headers=admin_headers)
    assert answer.status_code == 201, answer.text
    return {"Authorization": f"Bearer {answer.json()['key']}"}


def test_a_key_expiring_within_a_week_gets_sunset_headers(
    service: Any, make_tenant: Any, admin_headers: dict[str, str]
) -> None:
    tenant = make_tenant()
    soon = _key(service, admin_headers, tenant, expires_in_seconds=3 * 86400)
    answer = service.get("/v1/me", headers=soon)
    assert answer.status_code == 200
    sunset = parsedate_to_datetime(answer.headers["sunset"])
    assert abs(sunset - (datetime.now(UTC) + timedelta(days=3))) < timedelta(minutes=1)
    deprecation = answer.headers["deprecation"]
    assert deprecation.startswith("@")
    assert int(deprecation[1:]) == int((sunset - timedelta(days=7)).timestamp())


@pytest.mark.parametrize("body", [{"expires_in_seconds": 30 * 86400}, {}])
def test_other_keys_get_neither(
    body: dict[str, Any], service: Any, make_tenant: Any, admin_headers: dict[str, str]
) -> None:
    tenant = make_tenant()
    answer = service.get("/v1/me", headers=_key(service, admin_headers, tenant, **body))
    assert answer.status_code == 200
    assert "sunset" not in answer.headers
    assert "deprecation" not in answer.headers


def test_the_notice_starts_exactly_seven_days_before_expiry() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert sunset_headers(now + timedelta(days=7, seconds=1), now) == []
    assert [name for name, _ in sunset_headers(now + timedelta(days=7), now)] == [
        b"deprecation",
        b"sunset",
    ]
    assert sunset_headers(None, now) == []
