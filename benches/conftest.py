"""Bench configuration.

pyproject's ``addopts`` carry ``--benchmark-disable`` so that ordinary test runs only execute
each bench once. pytest-benchmark refuses ``--benchmark-only`` together with
``--benchmark-disable``; asking for ``--benchmark-only`` means "run the benchmarks", so it
re-enables them here (the same as adding ``--benchmark-enable``).
"""

from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("benchmark_only", default=False):
        config.option.benchmark_enable = True
