"""Launch tilings that benchmark scripts sweep from the command line: a frozen dataclass of positive integers,
written and parsed as comma-separated text in field order (e.g. `"8,1024,4"`)."""
from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from typing import ClassVar, TypeVar

TilingType = TypeVar("TilingType", bound="KernelTiling")


@dataclass(frozen=True)
class KernelTiling:
    """Base of the tilings; subclasses declare their integer fields and `FIELDS`, the names shown in errors."""

    FIELDS: ClassVar[str] = ""

    @classmethod
    def parse(cls: type[TilingType], text: str) -> TilingType:
        """The tiling of `text` (one positive integer per field, comma-separated); a ValueError naming the class and
        the expected fields otherwise."""
        values = text.split(",")
        if len(values) != len(fields(cls)) or not all(v.isdigit() and int(v) > 0 for v in values):
            raise ValueError(f"{cls.__name__} {text!r}: expected {len(fields(cls))} positive integers {cls.FIELDS}")
        return cls(*(int(v) for v in values))

    def __str__(self) -> str:
        return ",".join(str(value) for value in astuple(self))
