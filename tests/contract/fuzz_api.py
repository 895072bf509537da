"""schemathesis against a running tenantgate, as an outside client sees it.

Three runs, all checks (``--checks all``, configured by the top-level ``schemathesis.toml``),
each against the service's own ``/schema/openapi.json``:

- the tenant API (``^/v1/``) with a fresh tenant's key, on the default plan, so rate limiting
  answers ``429`` as it would to any client;
- the operator API (``^/admin/v1/``) with the admin token: it creates, changes and deletes
  tenants, keys and plans (the tenant run comes first);
- the service endpoints (``/healthz``, ``/readyz``, ``/metrics``), without credentials.

``tests/contract`` runs a bounded version as part of the suite. Run as a script (``make
fuzz-api``), it starts ``tenantgate dev`` on its own data folder and a free port, runs
schemathesis unbounded against it, stops it, and exits non-zero on any failure::

    python tests/contract/fuzz_api.py [--max-examples N] [--seed N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

ROOT = Path(__file__).resolve().parents[2]
"""The repository: schemathesis runs here, so it reads ``schemathesis.toml``."""

SCHEMA_PATH = "/schema/openapi.json"

BUILT_IN_PLANS = {
    "free": {"rate_per_second": 10, "burst": 20},
    "pro": {"rate_per_second": 100, "burst": 200},
    "enterprise": {"rate_per_second": 1000, "burst": 2000},
}
"""API.md's built-in plans: the admin run may change them, `restore_built_in_plans` undoes it."""


@dataclass(frozen=True)
class Run:
    """One schemathesis run: what it tested, how it ended, what it printed."""

    name: str
    returncode: int
    output: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.returncode == 0

    def report(self) -> str:
        verdict = "passed" if self.passed else f"FAILED (exit {self.returncode})"
        return f"===== schemathesis, {self.name}: {verdict} in {self.seconds:.1f} s =====\n" + (
            self.output
        )


def schemathesis_command() -> list[str]:
    """The ``st`` of this environment (next to its Python), else the one on ``PATH``."""
    beside = Path(sys.executable).with_name("st")
    found = str(beside) if beside.exists() else shutil.which("st")
    if found is None:
        raise RuntimeError("schemathesis is not installed: pip install -e '.[dev]'")
    return [found]


def create_tenant(url: str, admin_token: str, name: str = "schemathesis") -> str:
    """A new tenant on the default plan, made through the admin API; its key."""
    answer = httpx.post(
        f"{url}/admin/v1/tenants",
        json={"name": name},
        headers={"Authorization": f"Bearer {admin_token}"},
        timeout=30,
    )
    answer.raise_for_status()
    key: str = answer.json()["api_key"]["key"]
    return key


def restore_built_in_plans(url: str, admin_token: str) -> None:
    """Put the built-in plans back as API.md has them."""
    for name, plan in BUILT_IN_PLANS.items():
        answer = httpx.put(
            f"{url}/admin/v1/plans/{name}",
            json=plan,
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=30,
        )
        answer.raise_for_status()


def run_schemathesis(
    url: str,
    *,
    admin_token: str,
    tenant_key: str,
    max_examples: int | None = None,
    seed: int | None = None,
    timeout: float = 1800,
) -> list[Run]:
    """The three runs against the service at ``url`` (see the module's docstring)."""
    common = [
        *schemathesis_command(),
        "run",
        f"{url}{SCHEMA_PATH}",
        "--checks",
        "all",
        "--no-color",
        "--generation-database",
        "none",
        *(["--max-examples", str(max_examples)] if max_examples is not None else []),
        *(["--seed", str(seed)] if seed is not None else []),
    ]
    plan: Sequence[tuple[str, list[str]]] = (
        (
            "tenant API",
            ["--include-path-regex", "^/v1/", "-H", f"Authorization: Bearer {tenant_key}"],
        ),
        (
            "admin API",
            ["--include-path-regex", "^/admin/v1/", "-H", f"Authorization: Bearer {admin_token}"],
        ),
        ("service endpoints", ["--include-path-regex", "^/(healthz|readyz|metrics)$"]),
    )
    runs = []
    for name, arguments in plan:
        started = time.monotonic()
        finished = subprocess.run(
            [*common, *arguments],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        runs.append(
            Run(
                name=name,
                returncode=finished.returncode,
                output=finished.stdout + finished.stderr,
                seconds=time.monotonic() - started,
            )
        )
    return runs


# -- `make fuzz-api`: a fresh `tenantgate dev` ----------------------------------------------


@contextlib.contextmanager
def tenantgate_dev(
    data_dir: Path, port: int, ready_timeout: float = 300
) -> Iterator[dict[str, str]]:
    """``tenantgate dev`` on ``data_dir`` and ``port``; yields its ready line, stops it after."""
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("TENANTGATE_")
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tenantgate",
            "dev",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
        ],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        ready = _ready_line(process, ready_timeout)
        yield ready
    finally:
        _stop(process)


def _ready_line(process: subprocess.Popen[str], timeout: float) -> dict[str, str]:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"tenantgate dev exited ({process.poll()}) before it was ready")
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and event.get("event") == "ready":
                return event
    raise RuntimeError(f"tenantgate dev was not ready within {timeout:.0f} s")


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=None, help="test cases per operation")
    parser.add_argument("--seed", type=int, default=None, help="schemathesis' random seed")
    arguments = parser.parse_args(argv)

    from tenantgate.dev.ports import free_port

    with (
        tempfile.TemporaryDirectory(prefix="tenantgate-fuzz-") as scratch,
        tenantgate_dev(Path(scratch) / "data", free_port()) as ready,
    ):
        url, admin_token = ready["url"], ready["admin_token"]
        print(f"tenantgate dev is ready at {url}; running schemathesis", flush=True)
        runs = run_schemathesis(
            url,
            admin_token=admin_token,
            tenant_key=create_tenant(url, admin_token),
            max_examples=arguments.max_examples,
            seed=arguments.seed,
        )
    for run in runs:
        print(run.report(), flush=True)
    failed = [run.name for run in runs if not run.passed]
    print(f"schemathesis: {len(runs) - len(failed)} of {len(runs)} runs passed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
