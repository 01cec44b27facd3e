"""The JSON form of faceledger's results and records, derived from their dataclasses by pydantic.

Each result or record is a plain (stdlib) frozen dataclass that inherits :class:`Wire`. Its JSON form, what
``to_dict()`` returns, what ``--json`` prints and what the REST service answers, is pydantic's serialization of
the dataclass, and its JSON schema (the OpenAPI document) is derived from the same annotations. So the two are
the same shape by construction. Where the wire differs from the Python attribute the annotation says so:

- a different name: ``Annotated[str, Field(serialization_alias="image")]``;
- rounding: ``Annotated[float, rounded(6)]``;
- a derived value: a ``@computed_field`` property (``alias=`` when the property name is taken);
- an attribute not on the wire: ``Annotated[..., Field(exclude=True)]``;
- key order other than the fields' (computed fields come last otherwise): ``_wire_order``;
- a nested record whose fields appear at the top level: ``_wire_flatten``.

The dataclasses stay plain: constructing one validates nothing and costs nothing, ``dataclasses.replace`` and
attribute assignment behave as usual. Only serialization goes through pydantic.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar, cast

from pydantic import ConfigDict, GetCoreSchemaHandler, PlainSerializer, TypeAdapter
from pydantic_core import core_schema as cs

__all__ = ["Wire", "adapter", "rounded"]

# Every field is on the wire, even one with a default (so the schema marks it required); nothing else is.
WIRE_CONFIG = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)


def _round(value: Any, digits: int) -> float:
    return round(float(value), digits)


def rounded(digits: int) -> PlainSerializer:
    """Serialize a float rounded to ``digits`` decimals (``None`` stays ``None``)."""
    return PlainSerializer(functools.partial(_round, digits=digits), return_type=float, when_used="unless-none")


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def adapter(cls: type[Any]) -> TypeAdapter[Any]:
    """The pydantic adapter of a :class:`Wire` class (built on first use, then kept)."""
    found = _ADAPTERS.get(cls)
    if found is None:
        found = _ADAPTERS[cls] = TypeAdapter(cls)
    return found


class Wire:
    """Base of the dataclasses with a JSON form: ``to_dict()`` and the JSON schema come from the annotations.

    Subclasses may set ``_wire_order`` (the wire keys in the order they must appear) and ``_wire_flatten`` (the
    name of a field holding a dataclass whose keys are put at the top level instead of under that name).
    """

    __slots__ = ()
    __pydantic_config__: ClassVar[ConfigDict] = WIRE_CONFIG
    _wire_order: ClassVar[tuple[str, ...]] = ()
    _wire_flatten: ClassVar[str | None] = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``--json`` prints and the REST service answers)."""
        return cast(dict[str, Any], adapter(type(self)).dump_python(self, mode="json", by_alias=True))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: type[Any], handler: GetCoreSchemaHandler) -> cs.CoreSchema:
        schema = handler(source)
        if cls._wire_order or cls._wire_flatten:
            dataclass_schema = cast(cs.DataclassSchema, handler.resolve_ref_schema(schema))
            dataclass_schema["serialization"] = _keyed_serialization(cls, dataclass_schema, handler)
        return schema


# A wire key, how to read its value from the object, and the schema that serializes (and documents) the value.
_Entry = tuple[str, Callable[[Any], Any], cs.TypedDictField]


def _entries(schema: cs.DataclassSchema, read: Callable[[Any], Any]) -> list[_Entry]:
    """The wire keys of a dataclass schema in their natural order (fields, then computed fields)."""
    args = cast(cs.DataclassArgsSchema, schema["schema"])
    out: list[_Entry] = []

    def getter(name: str) -> Callable[[Any], Any]:
        return lambda obj: getattr(read(obj), name)

    for f in args["fields"]:
        if f.get("serialization_exclude"):
            continue
        key = f.get("serialization_alias") or f["name"]
        out.append(
            (key, getter(f["name"]), cs.typed_dict_field(f["schema"], required=True, metadata=f.get("metadata")))
        )
    for c in args.get("computed_fields", []):
        key = c.get("alias") or c["property_name"]
        out.append(
            (key, getter(c["property_name"]), cs.typed_dict_field(c["return_schema"], metadata=c.get("metadata")))
        )
    return out


def _keyed_serialization(cls: type[Wire], schema: cs.DataclassSchema, handler: GetCoreSchemaHandler) -> cs.SerSchema:
    """Serialize ``cls`` as a dict with its wire keys in ``_wire_order``, ``_wire_flatten`` expanded in place.

    The serializer collects the raw attribute values under their wire keys; a typed-dict schema built from the
    dataclass's own field schemas (so aliases, rounding and nested results apply as usual) serializes them,
    and is also what the JSON schema shows.
    """
    entries: list[_Entry] = []
    for key, read, field in _entries(schema, lambda obj: obj):
        if key != cls._wire_flatten:
            entries.append((key, read, field))
            continue
        inner = handler.resolve_ref_schema(field["schema"])
        if inner["type"] != "dataclass":
            raise TypeError(f"{cls.__name__}._wire_flatten: {key!r} is not a dataclass field")
        entries += _entries(cast(cs.DataclassSchema, inner), read)
    keys = [key for key, _, _ in entries]
    if len(set(keys)) != len(keys):
        raise TypeError(f"{cls.__name__}: wire keys appear twice: {keys}")
    if cls._wire_order:
        if sorted(cls._wire_order) != sorted(keys):
            raise TypeError(f"{cls.__name__}._wire_order {cls._wire_order} does not list the wire keys {keys}")
        position = {key: i for i, key in enumerate(cls._wire_order)}
        entries.sort(key=lambda entry: position[entry[0]])
    typed_dict = cs.typed_dict_schema(
        {key: field for key, _, field in entries}, cls=cls, extra_behavior="forbid", total=True
    )
    readers = [(key, read) for key, read, _ in entries]

    def serialize(obj: Any) -> dict[str, Any]:
        return {key: read(obj) for key, read in readers}

    return cs.plain_serializer_function_ser_schema(serialize, return_schema=typed_dict)
