"""``python -m tenantgate``: the same as the ``tenantgate`` command."""

from __future__ import annotations

import sys

from tenantgate.cli import main

if __name__ == "__main__":
    sys.exit(main())
