"""The public API: every name in `tenantgate.__all__` is importable from `tenantgate`, and the
README's plugin example — which imports from `tenantgate` alone — runs as written."""

from __future__ import annotations

import ast
import re
import sys
import types
from pathlib import Path

import pytest
from litestar.testing import TestClient

import tenantgate

README = Path(__file__).parents[2] / "README.md"


def test_every_public_name_is_importable_from_the_package() -> None:
    missing = [name for name in tenantgate.__all__ if not hasattr(tenantgate, name)]
    assert missing == []
    namespace: dict[str, object] = {}
    exec("from tenantgate import *", namespace)
    assert set(tenantgate.__all__) - {"__version__"} <= set(namespace)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        tenantgate.no_such_name  # noqa: B018


def _plugin_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Using the plugin in your own Litestar app") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the README has no plugin example"
    return match.group(1)


def test_the_readme_plugin_example_imports_tenantgate_names_from_the_package_alone() -> None:
    tree = ast.parse(_plugin_example())
    modules = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tenantgate")
    }
    assert modules == {"tenantgate"}


@pytest.mark.servers
def test_the_readme_plugin_example_serves_a_tenant_its_own_rows_and_cache(
    service_environment, make_tenant, service, monkeypatch
) -> None:
    for name, value in service_environment.items():
        monkeypatch.setenv(name, value)
    tenant, other = make_tenant(plan="pro"), make_tenant(plan="pro")
    made = service.post("/v1/items", json={"data": {"mine": True}}, headers=tenant.headers)
    assert made.status_code == 201
    service.post("/v1/items", json={"data": {"mine": False}}, headers=other.headers)

    # A module of its own, as a user's app.py would be (Litestar resolves handler
    # annotations in their module).
    example = types.ModuleType("readme_plugin_example")
    monkeypatch.setitem(sys.modules, example.__name__, example)
    exec(_plugin_example(), example.__dict__)
    with TestClient(example.app) as client:
        answer = client.get("/api/reports", headers=tenant.headers)
        refused = client.get("/api/reports")
        visits = [client.get("/api/visits", headers=tenant.headers).json() for _ in range(2)]
        others = client.get("/api/visits", headers=other.headers).json()
    assert visits == [{"visits": 1}, {"visits": 2}]
    assert others == {"visits": 1}
    assert answer.status_code == 200, answer.text
    assert [row["id"] for row in answer.json()] == [made.json()["id"]]
    assert refused.status_code == 403
