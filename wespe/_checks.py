"""Argument checks shared by the package's public entry points."""

from __future__ import annotations

from collections.abc import Sequence


def check_choice(name: str, value: object, choices: Sequence[object]) -> None:
    """Raise ``ValueError("<name> must be one of ...; got ...")`` unless ``value`` is a choice."""
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {allowed}; got {value!r}")
