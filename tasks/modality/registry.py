"""Modality registry: task classes registered by name, so a new modality is one Python file plus one YAML.

    @register_modality("timeseries_forecasting")
    class ForecastingTask(ModalityTask): ...

`get_modality(name)` returns the class (importing the modalities shipped with mambaseq first); configs still name the
class by its import path (`model.class_path`), which `MODALITIES[name]` gives as `f"{cls.__module__}.{cls.__name__}"`.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TypeVar

from mambaseq.tasks.base import SequenceTask

TaskClass = TypeVar("TaskClass", bound=type[SequenceTask])

MODALITIES: dict[str, type[SequenceTask]] = {}
BUILTIN_MODALITY_MODULES = ("mambaseq.tasks.timeseries.forecasting",)


def register_modality(name: str) -> Callable[[TaskClass], TaskClass]:
    """Class decorator: record a `SequenceTask` subclass under `name` (names are unique)."""

    def register(task_class: TaskClass) -> TaskClass:
        if not (isinstance(task_class, type) and issubclass(task_class, SequenceTask)):
            raise TypeError(f"register_modality({name!r}): {task_class!r} is not a SequenceTask subclass")
        existing = MODALITIES.get(name)
        if existing is not None and existing is not task_class:
            raise ValueError(f"modality {name!r} is already registered to {class_path(existing)}; cannot register "
                             f"{class_path(task_class)} under the same name")
        MODALITIES[name] = task_class
        return task_class

    return register


def get_modality(name: str) -> type[SequenceTask]:
    """The task class registered as `name`; the error lists the known names."""
    for module in BUILTIN_MODALITY_MODULES:
        importlib.import_module(module)
    if name not in MODALITIES:
        raise KeyError(f"modality {name!r} is not registered: known modalities are {sorted(MODALITIES)} (import the "
                       "module that defines it, or decorate its task with @register_modality)")
    return MODALITIES[name]


def class_path(task_class: type) -> str:
    """`module.ClassName`, as `model.class_path` in a config."""
    return f"{task_class.__module__}.{task_class.__qualname__}"
