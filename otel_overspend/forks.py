"""Starting over in a forked child: state that must not be shared with the parent."""

from __future__ import annotations

import os
import weakref
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("reset_in_forked_child",)

_T = TypeVar("_T")


def reset_in_forked_child(target: _T, reset: Callable[[_T], None]) -> None:
    """Call ``reset(target)`` in every forked child while ``target`` is alive (held weakly,
    so that registering does not keep it alive). No-op where there is no fork."""
    if not hasattr(os, "register_at_fork"):  # pragma: no cover - Windows
        return
    ref = weakref.ref(target)

    def run() -> None:
        alive = ref()
        if alive is not None:
            reset(alive)

    os.register_at_fork(after_in_child=run)
