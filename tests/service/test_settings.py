"""Settings come from TENANTGATE_* variables; a bad one stops start-up, naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantgate.errors import SettingsError
from tenantgate.settings import Settings

PEPPER_HEX = "0f" * 32
ADMIN_TOKEN = "admin-token-0123456789abcdef"

MINIMAL = {
    "TENANTGATE_DATABASE_URL": "postgresql://tenantgate:db-secret@db.internal:5432/tenantgate",
    "TENANTGATE_REDIS_URL": "redis://:redis-secret@cache.internal:6379/0",
    "TENANTGATE_ADMIN_TOKEN": ADMIN_TOKEN,
    "TENANTGATE_KEY_PEPPER": PEPPER_HEX,
}


def settings_with(**changes: str | None) -> Settings:
    environ = dict(MINIMAL)
    for name, value in changes.items():
        if value is None:
            environ.pop(f"TENANTGATE_{name}", None)
        else:
            environ[f"TENANTGATE_{name}"] = value
    return Settings.from_env(environ)


def test_minimal_environment_gives_documented_defaults() -> None:
    settings = settings_with()
    assert settings.database.url == MINIMAL["TENANTGATE_DATABASE_URL"]
    assert settings.redis.isolation == "auto"
    assert settings.s3.endpoint_url is None
    assert settings.s3.region == "us-east-1"
    assert settings.security.admin_token == ADMIN_TOKEN
    assert settings.security.key_pepper == bytes.fromhex(PEPPER_HEX)
    assert settings.limits.max_body_bytes == 1024 * 1024
    assert settings.limits.max_file_bytes == 100 * 1024 * 1024
    assert settings.hsm is None


def test_full_environment_is_read() -> None:
    library = Path(__file__)  # any existing file stands in for the PKCS#11 library
    settings = settings_with(
        REDIS_ISOLATION="database",
        S3_ENDPOINT_URL="http://127.0.0.1:8333",
        S3_ACCESS_KEY_ID="AKIAEXAMPLE",
        S3_SECRET_ACCESS_KEY="s3-secret",
        S3_REGION="eu-west-1",
        PKCS11_LIB=str(library),
        PKCS11_TOKEN_LABEL="tenantgate",
        PKCS11_PIN="hsm-pin",
        MAX_BODY_BYTES="2048",
        MAX_FILE_BYTES="4096",
    )
    assert settings.redis.isolation == "database"
    assert settings.s3.endpoint_url == "http://127.0.0.1:8333"
    assert settings.s3.access_key_id == "AKIAEXAMPLE"
    assert settings.s3.secret_access_key == "s3-secret"
    assert settings.s3.region == "eu-west-1"
    assert settings.hsm is not None
    assert settings.hsm.library_path == library
    assert settings.hsm.token_label == "tenantgate"
    assert settings.hsm.pin == "hsm-pin"
    assert settings.limits.max_body_bytes == 2048
    assert settings.limits.max_file_bytes == 4096


def test_secrets_never_appear_in_repr() -> None:
    settings = settings_with(
        S3_ACCESS_KEY_ID="AKIAEXAMPLE",
        S3_SECRET_ACCESS_KEY="s3-secret",
        PKCS11_LIB=__file__,
        PKCS11_TOKEN_LABEL="tenantgate",
        PKCS11_PIN="hsm-pin",
    )
    text = repr(settings)
    for secret in ("db-secret", "redis-secret", "s3-secret", ADMIN_TOKEN, PEPPER_HEX, "hsm-pin"):
        assert secret not in text
    assert repr(bytes.fromhex(PEPPER_HEX)) not in text
    assert "db.internal" in text  # the rest of the URL still helps debugging


@pytest.mark.parametrize(
    "variable",
    ["DATABASE_URL", "REDIS_URL", "ADMIN_TOKEN", "KEY_PEPPER"],
)
def test_missing_required_setting_is_named(variable: str) -> None:
    with pytest.raises(SettingsError, match=f"TENANTGATE_{variable} is not set"):
        settings_with(**{variable: None})


def test_blank_counts_as_missing() -> None:
    with pytest.raises(SettingsError, match="TENANTGATE_ADMIN_TOKEN"):
        settings_with(ADMIN_TOKEN="   ")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://db.internal/tenantgate"),
        ("DATABASE_URL", "postgresql://db.internal:port/tenantgate"),
        ("DATABASE_URL", "not a url"),
        ("REDIS_URL", "http://cache.internal:6379"),
        ("REDIS_URL", "redis://"),
        ("REDIS_ISOLATION", "per-tenant"),
        ("S3_ENDPOINT_URL", "ftp://s3.internal"),
        ("ADMIN_TOKEN", "short"),
        ("ADMIN_TOKEN", "has spaces in it, long enough"),
        ("KEY_PEPPER", "not-hex-at-all-not-hex-at-all-00"),
        ("KEY_PEPPER", "abc"),  # odd number of digits
        ("KEY_PEPPER", "00" * 15),  # 15 bytes: too short
        ("MAX_BODY_BYTES", "1MB"),
        ("MAX_BODY_BYTES", "0"),
        ("MAX_FILE_BYTES", "-5"),
        ("DATABASE_POOL_SIZE", "many"),
        ("PKCS11_LIB", "/nonexistent/libsofthsm2.so"),
        ("AUDIT_SEAL_INTERVAL_SECONDS", "-1"),
        ("AUDIT_SEAL_INTERVAL_SECONDS", "15m"),
        ("AUDIT_RETENTION_DAYS", "0"),
        ("AUDIT_RETENTION_DAYS", "36501"),
    ],
)
def test_malformed_setting_is_named(variable: str, value: str) -> None:
    changes = {variable: value}
    if variable == "PKCS11_LIB":
        changes |= {"PKCS11_TOKEN_LABEL": "label", "PKCS11_PIN": "1234"}
    with pytest.raises(SettingsError, match=f"TENANTGATE_{variable}"):
        settings_with(**changes)


def test_isolation_is_case_insensitive() -> None:
    assert settings_with(REDIS_ISOLATION="Namespace").redis.isolation == "namespace"


def test_s3_credentials_go_together() -> None:
    with pytest.raises(SettingsError, match="TENANTGATE_S3_SECRET_ACCESS_KEY"):
        settings_with(S3_ACCESS_KEY_ID="AKIAEXAMPLE")
    with pytest.raises(SettingsError, match="TENANTGATE_S3_ACCESS_KEY_ID"):
        settings_with(S3_SECRET_ACCESS_KEY="s3-secret")


def test_hsm_variables_go_together() -> None:
    with pytest.raises(SettingsError, match="TENANTGATE_PKCS11_PIN") as caught:
        settings_with(PKCS11_LIB=__file__, PKCS11_TOKEN_LABEL="tenantgate")
    assert "TENANTGATE_PKCS11_LIB" not in str(caught.value)


def test_unix_socket_urls_are_accepted() -> None:
    settings = settings_with(
        DATABASE_URL="postgresql://tenantgate:@/tenantgate?host=/run/postgresql",
        REDIS_URL="unix:///run/redis/redis.sock",
    )
    assert settings.database.url.startswith("postgresql://")
    assert settings.redis.url.startswith("unix://")


def test_settings_are_frozen() -> None:
    settings = settings_with()
    with pytest.raises(AttributeError):
        settings.limits = settings.limits  # type: ignore[misc]


@pytest.mark.parametrize("token", ["", "short", "with space in the middle", "é" * 20])
def test_security_settings_built_in_code_refuse_a_weak_admin_token(token: str) -> None:
    from tenantgate.settings import SecuritySettings

    with pytest.raises(SettingsError, match="TENANTGATE_ADMIN_TOKEN"):
        SecuritySettings(admin_token=token, key_pepper=b"p" * 32)


def test_trusted_proxies_are_cidrs() -> None:
    from ipaddress import ip_network

    environ = {**MINIMAL, "TENANTGATE_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.7"}
    assert Settings.from_env(environ).security.trusted_proxies == (
        ip_network("10.0.0.0/8"),
        ip_network("192.168.1.7/32"),
    )
    with pytest.raises(SettingsError, match="TENANTGATE_TRUSTED_PROXIES"):
        Settings.from_env({**MINIMAL, "TENANTGATE_TRUSTED_PROXIES": "10.0.0.0/8, nope"})


def test_redis_timeouts_pool_and_cluster_are_read_and_checked() -> None:
    settings = settings_with(REDIS_TIMEOUT="0.25", REDIS_POOL_SIZE="8", REDIS_CLUSTER="true")
    assert (settings.redis.timeout_seconds, settings.redis.pool_max_size) == (0.25, 8)
    assert settings.redis.cluster is True
    assert settings.redis.isolation == "namespace"
    for name, value in (("REDIS_TIMEOUT", "0"), ("REDIS_POOL_SIZE", "x"), ("REDIS_CLUSTER", "2")):
        with pytest.raises(SettingsError, match=f"TENANTGATE_{name}"):
            settings_with(**{name: value})


def test_audit_sealing_defaults_and_zero_turns_periodic_sealing_off() -> None:
    defaults = settings_with().audit
    assert (defaults.seal_interval_seconds, defaults.retention_days) == (900, 365)
    chosen = settings_with(AUDIT_SEAL_INTERVAL_SECONDS="0", AUDIT_RETENTION_DAYS="2555").audit
    assert (chosen.seal_interval_seconds, chosen.retention_days) == (0, 2555)


def test_behind_pgbouncer_sessions_take_the_direct_url_which_is_required() -> None:
    direct = "postgresql://tenantgate:db-secret@db.internal:5432/tenantgate"
    pooled = "postgresql://tenantgate:db-secret@pgbouncer.internal:6432/tenantgate"
    assert settings_with().database.pgbouncer is False
    assert (
        settings_with(DATABASE_DIRECT_URL=direct).database.session_url
        == (
            MINIMAL["TENANTGATE_DATABASE_URL"]  # without PgBouncer the one URL serves for all
        )
    )

    behind = settings_with(
        DATABASE_URL=pooled, DATABASE_PGBOUNCER="true", DATABASE_DIRECT_URL=direct
    ).database
    assert (behind.pgbouncer, behind.url, behind.session_url) == (True, pooled, direct)
    assert "db-secret" not in repr(behind)

    with pytest.raises(SettingsError, match="TENANTGATE_DATABASE_DIRECT_URL"):
        settings_with(DATABASE_URL=pooled, DATABASE_PGBOUNCER="true")
    with pytest.raises(SettingsError, match="TENANTGATE_DATABASE_DIRECT_URL"):
        settings_with(DATABASE_PGBOUNCER="true", DATABASE_DIRECT_URL="mysql://db/x")
    with pytest.raises(SettingsError, match="TENANTGATE_DATABASE_PGBOUNCER"):
        settings_with(DATABASE_PGBOUNCER="maybe", DATABASE_DIRECT_URL=direct)
