"""``python -m otel_overspend``: the ``otel-overspend`` command."""

from __future__ import annotations

from otel_overspend.cli import main

raise SystemExit(main())
