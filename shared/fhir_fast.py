"""A fast path for fhir.resources validation that gives exactly the answer of the full one (issue 9).

``fhir.resources`` validates every element of a resource through a Python wrapper, a model ``__init__``
and three Python model validators (fhir_core's ``reject_null_complex_elements``,
``_validate_required_primitive_elements``, ``_validate_one_of_many``): for a referral Bundle of ~60
elements that was the largest single cost of intake's request path. ``fast_validate`` walks the same
JSON once, driven by the same model classes:

- every primitive element is validated by pydantic against the model's own field annotation, config
  and constraints (one compiled validator per model class for all of its primitive fields), so its
  value is exactly the one the full validation stores;
- the checks the model validators make (a required element present, at most one — or exactly one —
  value of a choice element ``value[x]``, a resource's ``resourceType``) are made on the JSON's keys;
- the model instances are built from the validated values with ``model_construct``, as pydantic itself
  fills a model after validating it.

It only *accepts*: anything it does not handle in exactly the same way (a ``null``, an empty list, a
primitive extension ``_x``, ``fhir_comments``, a field addressed by its Python name, an unknown key, a
model class with validators of its own, a primitive that fails validation, any problem at all) makes it
return ``None``, and the caller runs the full validation, which produces the answer and every error
text as before. Tests check that whenever it accepts, the full validation accepts too and builds an
equal model (``tests/unit/test_fhir_fast.py``).
"""

from __future__ import annotations

import functools
import types
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

from fhir_core.constraints import FHIR_TYPES_MAPS
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from fhir_core.types import FhirBase, FhirElementOrResourceBase
from pydantic import ConfigDict, TypeAdapter
from pydantic._internal._validators import import_string
from typing_extensions import TypedDict

M = TypeVar("M", bound=FHIRAbstractModel)
MAX_DEPTH = 48
# The validators every FHIR model has (fhir_core's), whose checks the walk makes itself. A model class
# with any other validator or serializer of its own is left to the full validation.
BASE_VALIDATORS = frozenset(FHIRAbstractModel.__pydantic_decorators__.model_validators)


class _Fallback(Exception):
    """This input is not one the fast path answers for: the full validation decides."""


@dataclass(frozen=True)
class _Complex:
    """A field holding another FHIR model (or, for ``Resource`` fields, any resource by its type)."""

    name: str
    model: type[FHIRAbstractModel] | None  # None: a resource chosen by its resourceType
    prefix: str
    many: bool


@dataclass
class _Plan:
    """What the walk needs to know about one model class, worked out once."""

    model: type[FHIRAbstractModel]
    # Every key the walk accepts, in one look-up: the bit of the choice element (``value[x]``) it is a
    # type of (0 when none) and its complex field (None for a primitive). ``resourceType`` is never in it.
    keys: dict[str, tuple[int, _Complex | None]]
    primitives: dict[str, str]  # JSON key -> field name, for the primitive fields
    required: tuple[str, ...]  # JSON keys that must be present
    needed_mask: int  # the bits of the choice elements that must have a value
    resource_type_field: bool  # the class has a field of its own named resourceType
    validator: Any  # pydantic validator of the primitive fields, or None when the class has none
    defaults: dict[str, Any]  # every field's value when absent, in the fields' order (as pydantic fills them)


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """The element type of a field annotation (without ``Optional``), and whether it is a list."""
    many = False
    while True:
        origin = typing.get_origin(annotation)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation, many
            annotation = args[0]
        elif origin is list:
            if many:
                return None, many  # a list of lists: not a FHIR shape the walk knows
            many = True
            (annotation,) = typing.get_args(annotation)
        else:
            return annotation, many


def _is_fhir_type(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, FhirBase)


def _mentions_fhir_type(annotation: Any) -> bool:
    return _is_fhir_type(annotation) or any(_mentions_fhir_type(a) for a in typing.get_args(annotation))


@functools.cache
def _plan(model: type[FHIRAbstractModel]) -> _Plan | None:
    """How to walk ``model``'s JSON, or ``None`` when the class is one the walk leaves alone."""
    decorators = model.__pydantic_decorators__
    if (
        set(decorators.model_validators) != BASE_VALIDATORS
        or decorators.field_validators
        or decorators.validators
        or decorators.root_validators
        or decorators.computed_fields
    ):
        return None
    if (
        model.__init__ is not FHIRAbstractModel.__init__
        or model.__pydantic_post_init__ is not None
        or model.__pydantic_root_model__
        or model.__private_attributes__
        or model.model_config.get("extra") == "allow"
    ):
        return None
    primitives: dict[str, str] = {}
    complex_fields: dict[str, _Complex] = {}
    primitive_fields: dict[str, Any] = {}
    required: list[str] = []
    defaults: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if field.is_required():
            defaults[name] = None  # its place in the order: a required field is always given
        else:
            if field.default_factory is not None or field.default not in (None, True, False):
                return None  # a default pydantic would copy or compute: left to the full validation
            defaults[name] = field.default
        if name == "fhir_comments" or name.endswith("__ext"):
            continue  # never accepted by the walk (their keys are unknown to it)
        key = field.alias or name
        if field.is_required():
            required.append(key)
        element, many = _unwrap(field.annotation)
        if _is_fhir_type(element):
            if issubclass(element, FhirElementOrResourceBase):
                if element.get_model_klass().__name__ != "Resource":
                    return None  # Element-typed fields: left to the full validation
                complex_fields[key] = _Complex(name, None, element._prefix, many)
            else:
                complex_fields[key] = _Complex(name, element.get_model_klass(), element._prefix, many)
        elif element is None or _mentions_fhir_type(field.annotation):
            return None
        else:
            primitives[key] = name
            primitive_fields[key] = field.annotation
    sample = model.model_construct()
    required.extend(element for element, _ in sample.get_required_fields())
    choice_of: dict[str, int] = {}
    needed: set[int] = set()
    for index, fields in enumerate(sample.get_one_of_many_fields().values()):
        choice_of.update((model.model_fields[f].alias or f, index) for f in fields)
        if model.model_fields[fields[0]].json_schema_extra["one_of_many_required"] is True:  # type: ignore[index]
            needed.add(index)
    validator = None
    if primitive_fields:
        # The model's own annotations and config, keyed by the JSON names; values come back as a dict.
        config = ConfigDict(**{k: v for k, v in model.model_config.items() if k != "title"})  # type: ignore[typeddict-item]
        holder = TypedDict(f"{model.__name__}Primitives", primitive_fields, total=False)  # type: ignore[operator]
        holder.__pydantic_config__ = config  # type: ignore[attr-defined]
        validator = TypeAdapter(holder).validator
    keys: dict[str, tuple[int, _Complex | None]] = {}
    for key in (*primitives, *complex_fields):
        if key != "resourceType":
            keys[key] = (1 << choice_of[key] if key in choice_of else 0, complex_fields.get(key))
    return _Plan(
        model,
        keys,
        primitives,
        tuple(dict.fromkeys(required)),
        sum(1 << index for index in needed),
        "resourceType" in primitives,
        validator,
        defaults,
    )


@functools.cache
def _resource_model_at(dotted: str) -> type[FHIRAbstractModel] | None:
    """The resource model class at a dotted name of fhir_core's map (so the cache is bounded by the map,
    whatever resourceType a sender makes up); ``None`` when it is not a resource."""
    model: type[FHIRAbstractModel] = import_string(dotted)
    return model if model.has_resource_base() else None


def _resource_model(data: dict[str, Any], prefix: str) -> type[FHIRAbstractModel]:
    """The model class the full validation picks for a resource by its resourceType (fhir_core's look-up)."""
    resource_type = data.get("resourceType")
    dotted = FHIR_TYPES_MAPS.get(f"{prefix}{resource_type}Type") if type(resource_type) is str else None
    model = _resource_model_at(dotted) if dotted is not None else None
    if model is None or model.__resource_type__ != resource_type:
        raise _Fallback
    return model


def _build(model: type[FHIRAbstractModel], data: Any, depth: int, *, resource: bool) -> FHIRAbstractModel:
    if type(data) is not dict or depth > MAX_DEPTH:
        raise _Fallback
    plan = _plan(model)
    if plan is None:
        raise _Fallback
    primitives: dict[str, Any] = {}
    values: dict[str, Any] = {}
    chosen = 0  # the choice elements given a value, as bits
    keys = plan.keys
    for key, value in data.items():
        if value is None:
            raise _Fallback
        entry = keys.get(key)
        if entry is None:
            if key == "resourceType" and resource and not plan.resource_type_field:
                continue  # checked against the model below
            raise _Fallback
        bit, complex_field = entry
        if bit:
            if chosen & bit:
                raise _Fallback
            chosen |= bit
        if complex_field is None:
            if type(value) is list and (not value or any(item is None for item in value)):
                raise _Fallback
            primitives[key] = value
        elif complex_field.many:
            if type(value) is not list or not value:
                raise _Fallback
            values[complex_field.name] = [_child(complex_field, item, depth) for item in value]
        else:
            values[complex_field.name] = _child(complex_field, value, depth)
    if resource and data.get("resourceType") != model.__resource_type__:
        raise _Fallback
    for key in plan.required:
        if key not in data:
            raise _Fallback
    if plan.needed_mask & ~chosen:
        raise _Fallback
    if primitives:
        for key, value in plan.validator.validate_python(primitives).items():
            values[plan.primitives[key]] = value
    # As pydantic's ``model_construct`` fills a model, without looking at every field's default again.
    instance = model.__new__(model)
    fields = dict(plan.defaults)
    fields.update(values)
    object.__setattr__(instance, "__dict__", fields)
    object.__setattr__(instance, "__pydantic_fields_set__", set(values))
    object.__setattr__(instance, "__pydantic_extra__", None)
    object.__setattr__(instance, "__pydantic_private__", None)
    return instance


def _child(field: _Complex, value: Any, depth: int) -> FHIRAbstractModel:
    if field.model is None:
        if type(value) is not dict:
            raise _Fallback
        return _build(_resource_model(value, field.prefix), value, depth + 1, resource=True)
    return _build(field.model, value, depth + 1, resource=False)


def fast_validate(model: type[M], body: dict[str, Any]) -> M | None:
    """``model.model_validate(body)`` for a resource the fast path handles, ``None`` for any other
    (then the full validation must run: it alone produces errors)."""
    try:
        return _build(model, body, 0, resource=True)  # type: ignore[return-value]
    except Exception:  # noqa: BLE001 - a failing primitive, or any surprise: the full validation answers
        return None
