"""A small settings model read from the environment: what `core/config.py`'s `Settings` needs of
pydantic, without pydantic.

Why: building `Settings` as a pydantic model cost every process ~110 ms of CPU here (importing
pydantic, its plugin loader's `importlib.metadata`, and building the schema of 36 fields), paid
by `sessions --json`, the dashboard and the local profile, none of which use pydantic otherwise
(issue 17). This keeps the very same way of declaring a setting, so a new one is still one line:

    name: float = Field(1.0, ge=0, validation_alias=_env("MK0R_NAME"))

    @field_validator("name")                    # mode="after" (default) or mode="before"
    @classmethod
    def _check(cls, value: float) -> float: ...

What it does, as pydantic's lax mode did for these types: each field is read from the first of
its aliases set in the environment (names matched case-insensitively), a value passed to the
constructor (by field name or alias) wins over the environment, unknown names are ignored;
values are coerced to the annotation (`str`, `int`, `float`, `bool`, `Path`, `Literal[...]`,
`X | None`), checked against `ge`/`gt`/`le`/`lt`, and run through the validators (before ones on
the raw value, after ones on the coerced value); defaults are not validated. Every problem is
collected into one `SettingsValidationError`, each located by the name it was given under (the
env var's name for a value from the environment). Instances are frozen; `model_copy(update=)`
and `model_fields` work as pydantic's do.
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, Union, get_args, get_origin

_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


class AliasChoices:
    """The environment variables a field may come from, first found wins."""

    def __init__(self, *choices: str) -> None:
        self.choices: list[str] = list(choices)

    def __repr__(self) -> str:
        return f"AliasChoices({', '.join(map(repr, self.choices))})"


@dataclass(frozen=True)
class FieldInfo:
    default: Any
    validation_alias: AliasChoices | str | None = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    description: str | None = None
    annotation: Any = None

    @property
    def aliases(self) -> list[str]:
        alias = self.validation_alias
        if alias is None:
            return []
        return list(alias.choices) if isinstance(alias, AliasChoices) else [alias]


def Field(
    default: Any = ..., *, validation_alias: AliasChoices | str | None = None, ge: float | None = None,
    gt: float | None = None, le: float | None = None, lt: float | None = None, description: str | None = None,
) -> Any:
    return FieldInfo(default, validation_alias, ge, gt, le, lt, description)


@dataclass(frozen=True)
class _Validator:
    method: Any  # the classmethod it decorates
    fields: tuple[str, ...]
    mode: str


def field_validator(*fields: str, mode: Literal["before", "after"] = "after") -> Callable[[Any], Any]:
    """Decorates a classmethod `(cls, value) -> value` that checks (and may change) these fields."""

    def mark(method: Any) -> Any:
        return _Validator(method, fields, mode)

    return mark


class SettingsValidationError(ValueError):
    """Every problem found, as pydantic's `ValidationError.errors()` lists them."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in problems))
        self._problems = problems

    def errors(self) -> list[dict[str, Any]]:
        return list(self._problems)


class EnvModel:
    """Subclass it and declare fields with annotations and `Field(...)` (see the module doc)."""

    model_fields: ClassVar[dict[str, FieldInfo]] = {}
    _validators: ClassVar[tuple[_Validator, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        hints = typing.get_type_hints(cls)
        fields: dict[str, FieldInfo] = {}
        for name, annotation in hints.items():
            if name.startswith("_") or get_origin(annotation) is ClassVar or name == "model_fields":
                continue
            declared = cls.__dict__.get(name, ...)
            info = declared if isinstance(declared, FieldInfo) else FieldInfo(declared)
            fields[name] = replace(info, annotation=annotation)
            if name in cls.__dict__:
                delattr(cls, name)  # an instance holds the value; the class holds none
        validators = []
        for attr, value in list(cls.__dict__.items()):
            if isinstance(value, _Validator):
                unknown = set(value.fields) - set(fields)
                if unknown:
                    raise TypeError(f"{cls.__name__}.{attr} validates unknown fields {sorted(unknown)}")
                validators.append(value)
                setattr(cls, attr, value.method)
        cls.model_fields = {**getattr(cls, "model_fields", {}), **fields}
        cls._validators = (*getattr(cls, "_validators", ()), *validators)

    def __init__(self, **values: Any) -> None:
        given = _with_environ(type(self).model_fields, values)
        problems: list[dict[str, Any]] = []
        explicit: set[str] = set()
        for name, info in type(self).model_fields.items():
            where = next((k for k in (name, *info.aliases) if k in given), None)
            if where is not None:
                explicit.add(name)
            if where is None:
                if info.default is ...:
                    problems.append({"loc": (name,), "msg": "Field required"})
                    continue
                object.__setattr__(self, name, info.default)
                continue
            try:
                value = self._validated(name, info, given[where])
            except (ValueError, TypeError, AssertionError) as exc:
                problems.append({"loc": (where,), "msg": str(exc)})
                continue
            object.__setattr__(self, name, value)
        if problems:
            raise SettingsValidationError(problems)
        object.__setattr__(self, "_fields_set", frozenset(explicit))

    @property
    def model_fields_set(self) -> frozenset[str]:
        """The fields given explicitly (a keyword or their environment variable), as pydantic's:
        the rest hold their defaults (the dashboard's settings file fills only those)."""
        given: frozenset[str] = self.__dict__.get("_fields_set", frozenset())
        return given

    def _validated(self, name: str, info: FieldInfo, value: Any) -> Any:
        owner = type(self)
        for validator in owner._validators:
            if validator.mode == "before" and name in validator.fields:
                value = _run(validator, owner, value)
        value = _coerce(value, info.annotation)
        _bounds(value, info)
        for validator in owner._validators:
            if validator.mode == "after" and name in validator.fields:
                value = _run(validator, owner, value)
        return value

    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> Any:
        """A copy with `update` applied as is (not validated, as pydantic's model_copy)."""
        copy = object.__new__(type(self))
        kept = {k: v for k, v in self.__dict__.items() if k in type(self).model_fields}
        copy.__dict__.update(kept)
        copy.__dict__.update(dict(update or {}))
        copy.__dict__["_fields_set"] = self.model_fields_set | frozenset(update or {})
        return copy

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError(f"{type(self).__name__} is frozen: {name} cannot be set (use model_copy(update=...))")

    def __delattr__(self, name: str) -> None:
        raise TypeError(f"{type(self).__name__} is frozen")

    def _values(self) -> tuple[Any, ...]:
        return tuple(self.__dict__.get(name) for name in type(self).model_fields)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={self.__dict__.get(name)!r}" for name in type(self).model_fields)
        return f"{type(self).__name__}({shown})"


def _with_environ(fields: Mapping[str, FieldInfo], given: Mapping[str, Any]) -> dict[str, Any]:
    environ = {k.upper(): v for k, v in os.environ.items()}
    values = dict(given)
    for name, info in fields.items():
        if name in given or any(a in given for a in info.aliases):
            continue
        for alias in info.aliases:
            if alias.upper() in environ:
                values[alias] = environ[alias.upper()]  # under its env name: an error names the variable
                break
    return values


def _run(validator: _Validator, owner: type, value: Any) -> Any:
    try:
        return validator.method.__get__(None, owner)(value)
    except (ValueError, AssertionError) as exc:
        raise ValueError(f"Value error, {exc}") from None


def _coerce(value: Any, annotation: Any) -> Any:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = get_args(annotation)
        if value is None and type(None) in options:
            return None
        first: Exception | None = None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option)
            except (ValueError, TypeError) as exc:
                first = first or exc
        raise first or ValueError("Input should be None")
    if origin is Literal:
        allowed = get_args(annotation)
        if value in allowed:
            return value
        raise ValueError(f"Input should be {_either(repr(a) for a in allowed)}")
    if annotation is Any:
        return value
    if annotation is bool:
        return _bool(value)
    if annotation is int:
        return _int(value)
    if annotation is float:
        return _float(value)
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ValueError("Input should be a valid string")
    if annotation is Path:
        if isinstance(value, (str, os.PathLike)):
            return Path(value)
        raise ValueError("Input should be a valid path")
    if isinstance(annotation, type) and isinstance(value, annotation):
        return value
    raise TypeError(f"a setting of type {annotation!r} is not supported by core/envmodel.py")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError("Input should be a valid boolean, unable to interpret input")


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError("Input should be a valid integer, unable to parse string as an integer")


def _float(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ValueError("Input should be a valid number, unable to parse string as a number")


def _bounds(value: Any, info: FieldInfo) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if info.ge is not None and not value >= info.ge:
        raise ValueError(f"Input should be greater than or equal to {info.ge}")
    if info.gt is not None and not value > info.gt:
        raise ValueError(f"Input should be greater than {info.gt}")
    if info.le is not None and not value <= info.le:
        raise ValueError(f"Input should be less than or equal to {info.le}")
    if info.lt is not None and not value < info.lt:
        raise ValueError(f"Input should be less than {info.lt}")


def _either(options: Iterable[str]) -> str:
    items = list(options)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


__all__ = ["AliasChoices", "EnvModel", "Field", "FieldInfo", "SettingsValidationError", "field_validator"]
