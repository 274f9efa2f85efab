"""The base of every config section, and per-candidate/per-workload override variants of one."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict
from pydantic.fields import FieldInfo


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class _Overrides(_Section):
    """The base of every partial section; its fields are made at run time, from the full section's."""

    if TYPE_CHECKING:  # the type checker cannot see fields built at run time: any of the full section's
        def __init__(self, **overrides: Any) -> None: ...


def _partial(model: type[_Section], name: str) -> type[_Overrides]:
    """The same section with every field optional: per-candidate overrides of the global one."""
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        info = copy.copy(info)
        info.default_factory = None  # the partial's default is None, never the full section's factory
        optional = FieldInfo.merge_field_infos(info, default=None)
        annotation: Any = info.annotation  # a runtime type expression, which `| None` accepts
        optional.annotation = annotation | None
        fields[field_name] = (optional.annotation, optional)
    from pydantic import create_model

    # Defined beside `model` (assigned there under `name`), so instances pickle like the full section's.
    return create_model(name, __base__=_Overrides, __module__=model.__module__, **fields)
