"""Which implementation of the core this process runs.

The service runs the Rust extension (:mod:`tenantgate._native`). ``TENANTGATE_CORE=reference``
swaps in the pure-Python twin (:mod:`tenantgate.reference`) — for ``make bench-e2e`` only, so
the README can show what the native core buys end to end; it is never meant for production.
Read once, at import, because the re-exporting modules (:mod:`tenantgate.keys`,
:mod:`tenantgate.limits`, :mod:`tenantgate.clock`) bind their names then.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Final

from tenantgate.errors import SettingsError

__all__ = ["CORE", "implementation"]

CORE: Final = os.environ.get("TENANTGATE_CORE", "native")

if TYPE_CHECKING or CORE == "native":
    from tenantgate import _native as implementation
elif CORE == "reference":
    from tenantgate import reference as implementation
else:
    raise SettingsError(f"TENANTGATE_CORE must be native or reference, not {CORE!r}")
