"""The dict round trip every config dataclass shares (``config.json`` holds these dicts).

A leaf module: any layer may import it (``tests/test_architecture.py``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from attnlab.errors import InputError

__all__ = ["DictConfig"]

C = TypeVar("C", bound="DictConfig")


class DictConfig:
    """Mixin for a ``@dataclass`` config: ``to_dict`` and a strict ``from_dict``."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a version mismatch)."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown {cls.__name__} fields {unknown}; expected a subset of "
                             f"{sorted(names)}")
        return cls(**data)
