"""The campaign launch schema as Dagster config, generated from the pydantic one: the launchpad then shows
every field with its description and default (the demo campaign's values) and checks types as the user
types. pydantic still validates the whole config when the asset runs (ranges, rules across fields)."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any, Literal, cast

import dagster as dg
from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from bcomc_dagster.config import rendered

_SCALARS = {bool: dg.Bool, int: dg.Int, float: dg.Float, str: dg.String}


def _type(ann: Any) -> object:  # a Dagster config type: a ConfigType, a Python scalar type or dg.Any
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return dg.Noneable(_type(inner[0]))
        return dg.Any
    if origin is Literal:
        return dg.String  # the allowed values are in the description; pydantic enforces them
    if origin is dict:
        return dg.Map(str, _type(args[1]))  # type: ignore[no-untyped-call]  # Map.__init__ is unannotated
    if origin in (list, tuple):
        return dg.Array(_type(args[0]))
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return dg.Shape(fields(ann))  # type: ignore[no-untyped-call]  # Shape.__init__ is unannotated
    return _SCALARS.get(ann, dg.Any)


def _default(field: FieldInfo) -> Any:
    if field.default is not PydanticUndefined:
        d = field.default
    elif field.default_factory is not None:
        d = cast(Callable[[], Any], field.default_factory)()  # the launch models' factories take no data
    else:
        return PydanticUndefined
    return d.model_dump(mode="json") if isinstance(d, BaseModel) else d


def describe(field: FieldInfo) -> str | None:
    """The field's description with its bounds (from the schema's constraints), as the launchpad shows it."""
    words = {Ge: "at least", Gt: "above", Le: "at most", Lt: "below"}
    limits = [
        f"{word} {getattr(m, attr):g}"
        for m in field.metadata
        for kind, word in words.items()
        if isinstance(m, kind) and (attr := kind.__name__.lower())
    ]
    text = rendered(field.description)
    return f"{text or ''} ({', '.join(limits)})".strip() if limits else text


def fields(model: type[BaseModel], defaults: dict[str, Any] | None = None) -> dict[str, dg.Field]:
    """Dagster fields for a pydantic model; ``defaults`` (e.g. the demo config) override its defaults."""
    out: dict[str, dg.Field] = {}
    for name, f in model.model_fields.items():
        default = _default(f)
        sub = (defaults or {}).get(name, PydanticUndefined)
        if isinstance(default, dict) and isinstance(sub, dict):
            default = {**default, **sub}
        elif sub is not PydanticUndefined:
            default = sub
        kind = _type(f.annotation)
        if (
            isinstance(f.annotation, type)
            and issubclass(f.annotation, BaseModel)
            and isinstance(default, dict)
        ):
            # nested defaults, field by field... (dagster's Shape.__init__ is unannotated)
            kind = dg.Shape(fields(f.annotation, default))  # type: ignore[no-untyped-call]
            full = f.annotation.model_validate(default).model_dump(mode="json")  # ...and whole, when omitted
            out[name] = dg.Field(kind, default_value=full, is_required=False, description=describe(f))
            continue
        if default is PydanticUndefined:
            out[name] = dg.Field(kind, is_required=True, description=describe(f))
        else:
            out[name] = dg.Field(kind, default_value=default, is_required=False, description=describe(f))
    return out
