"""Model-name patterns in settings: a glob (``ft:gpt-4o*``) or a regex (``re:^my-.*-rerank$``)."""

from __future__ import annotations

import fnmatch
import re
from typing import Final

__all__ = ("compile_pattern",)

_REGEX_PREFIX: Final = "re:"


def compile_pattern(pattern: str, *, field: str) -> re.Pattern[str]:
    """Compile a settings pattern, or raise :class:`ValueError` naming ``field`` and the pattern.

    Globs match the whole model name, case-insensitively; regexes are searched as written.
    Either way the result is used with ``.search``.
    """
    if not pattern:
        raise ValueError(f"{field}: empty model pattern")
    if pattern.startswith(_REGEX_PREFIX):
        try:
            return re.compile(pattern[len(_REGEX_PREFIX) :])
        except re.error as exc:
            raise ValueError(f"{field}: invalid regex {pattern!r}: {exc}") from None
    return re.compile(r"\A" + fnmatch.translate(pattern), re.IGNORECASE)
