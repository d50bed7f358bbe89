"""Pydantic models built from values routedllm computed itself, without validating them.

A routed call builds a decision and its records from values the package has already
checked (catalog figures, counts read through :mod:`routedllm.records.schema`, its own
timings). Validating them again costs more per call than the rest of the record, and
pydantic's ``model_construct`` is slower still for a model of thirty fields. Values from
outside (framework callbacks, files, a caller's arguments) are still validated; the
tests build each trusted model both ways and compare them field by field and as JSON.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


_Factories = tuple[tuple[str, Callable[[], Any]], ...]


@functools.cache
def _template(cls: type[BaseModel]) -> tuple[dict[str, Any], tuple[str, ...], _Factories]:
    """Every field of ``cls`` in declaration order with its default, the required fields,
    and the fields whose default comes from a factory."""
    values: dict[str, Any] = {}
    required: list[str] = []
    factories: list[tuple[str, Callable[[], Any]]] = []
    for name, field in cls.model_fields.items():
        values[name] = field.default
        if field.default_factory is not None:
            factories.append((name, field.default_factory))  # type: ignore[arg-type]
        elif field.is_required():
            required.append(name)
    return values, tuple(required), tuple(factories)


def trusted(cls: type[M], **fields: Any) -> M:
    """``cls(**fields)`` without validation: ``fields`` must already be what validation
    would give (tuples, not lists; floats, not ints); unset fields take their defaults.
    Fields set, equality, copies and serialization are those of the validated model."""
    template, required, factories = _template(cls)
    for name in required:
        if name not in fields:
            raise TypeError(f"{cls.__name__}: {name} is required")
    values = template.copy()
    values.update(fields)
    for name, factory in factories:
        if name not in fields:
            values[name] = factory()
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    object.__setattr__(obj, "__pydantic_fields_set__", set(fields))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj
