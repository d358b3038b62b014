"""Settings of a memory backend: one validated dataclass per backend.

Each backend declares its settings as dataclass fields of a :class:`MemoryConfig`
subclass, with :func:`option` giving the default, a help text and the allowed values.
The base class checks every field against its type and bounds when the config is built,
so each backend only writes the checks that tie fields together
(:meth:`MemoryConfig.validate`). The pattern follows peft's ``LoraConfig``: the config
is plain data (``to_dict`` / ``from_dict``), bound to its backend class by
:func:`~memory_bank.register_memory`.
"""

from __future__ import annotations

import math
import typing
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from typing import Any, ClassVar

from .errors import MemoryConfigError


MAX_FRAMES = 100_000
"""The most entries a config may ask a memory to hold (a bounded memory; a typo of 10**9 is refused)."""


def option(default: Any, help: str, *, minimum: float | None = None, maximum: float | None = None,
           choices: tuple[str, ...] | None = None) -> Any:
    """A config field: its default, one line of help, and the values it accepts.

    Args:
        default: the default value (lists and tuples are copied per instance).
        help: what the option does, in the option's own units; shown in errors and docs.
        minimum / maximum: inclusive bounds of a number (or of each item of a tuple of numbers).
        choices: the accepted strings.
    """
    meta = {"help": help, "minimum": minimum, "maximum": maximum, "choices": choices}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


def hidden_size_option() -> Any:
    """The ``mm_hidden_size`` field every config has: the channel width ``C`` of the stored tokens."""
    return option(1152, "channel width C of the stored tokens (the vision encoder's: 1152 for SigLIP)", minimum=1)


def check_finite_option() -> Any:
    """The ``check_finite`` field: reject frames holding NaN or Inf (one host sync per frame on GPU)."""
    return option(True, "reject frames holding NaN or Inf values (one host sync per frame on GPU)")


_PLURAL = {int: "integers", float: "numbers", bool: "true / false values", str: "strings"}


def _check_scalar(name: str, value: Any, hint: Any, meta: dict[str, Any]) -> Any:
    """``value`` as ``hint`` (int, float, bool or str) within ``meta``'s bounds, or MemoryConfigError."""
    help_text = f" ({meta['help']})" if meta.get("help") else ""
    lo, hi, choices = meta.get("minimum"), meta.get("maximum"), meta.get("choices")
    if hint is bool:
        if not isinstance(value, bool):
            raise MemoryConfigError(f"{name} must be true or false{help_text}, got {value!r}")
        return value
    if hint is str:
        if choices is not None and value not in choices:
            raise MemoryConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
        if not isinstance(value, str):
            raise MemoryConfigError(f"{name} must be a string{help_text}, got {value!r}")
        return value
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        if not number or not isinstance(value, int) or (lo is not None and value < lo) or (hi is not None and value > hi):
            bound = f" >= {lo:g}" if lo is not None else ""
            bound += f" and <= {hi:g}" if hi is not None else ""
            raise MemoryConfigError(f"{name} must be an integer{bound}{help_text}, got {value!r}")
        return value
    if hint is float:
        if (not number or not math.isfinite(value) or (lo is not None and value < lo)
                or (hi is not None and value > hi)):
            where = f" in [{lo:g}, {hi:g}]" if lo is not None and hi is not None else (
                f" >= {lo:g}" if lo is not None else " (finite)")
            raise MemoryConfigError(f"{name} must be a number{where}{help_text}, got {value!r}")
        return float(value)
    raise TypeError(f"config field {name} has type {hint}, which MemoryConfig does not check")


def _check_field(f: Field, value: Any, hint: Any) -> Any:
    """``value`` checked against the field's type hint and metadata (see :func:`option`)."""
    args = typing.get_args(hint)
    if type(None) in args:  # Optional[X]: None is allowed
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, (list, tuple)):
            raise MemoryConfigError(f"{f.name} must be a list of {_PLURAL.get(item, item)} ({f.metadata.get('help')}), "
                                    f"got {value!r}")
        return tuple(_check_scalar(f"{f.name}[{i}]", v, item, {**f.metadata, "help": None})
                     for i, v in enumerate(value))
    return _check_scalar(f.name, value, hint, dict(f.metadata))


@dataclass
class MemoryConfig:
    """Base class of every memory backend's settings.

    A subclass is a dataclass whose fields are made with :func:`option` and always
    include ``mm_hidden_size`` (the channel width ``C`` of the tokens the backend stores).
    Building one checks every field against its type and bounds (an ``int`` field takes
    no ``bool``, a ``float`` field takes an ``int`` and no NaN / Inf, a ``tuple`` field
    takes a list), then calls :meth:`validate` for the checks that tie fields together.

    Raises:
        MemoryConfigError: naming the field, what it accepts and what it got.
    """

    STATE_EXCLUDED: ClassVar[tuple[str, ...]] = ("mm_hidden_size", "check_finite", "memory_check_finite")
    """Fields a saved state need not share (the width is checked on the tokens; input checks do not change state)."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            if f.init:
                setattr(self, f.name, _check_field(f, getattr(self, f.name), hints[f.name]))
        self.validate()

    def validate(self) -> None:
        """Checks across fields; subclasses extend it (types and bounds are checked already).

        Raises:
            MemoryConfigError: naming the setting and what to do.
        """

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python (JSON / YAML-able) form: tuples become lists; :meth:`from_dict` inverts it."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()
                if self.__dataclass_fields__[k].init}

    @classmethod
    def from_dict(cls, data: dict[str, Any], what: str | None = None) -> MemoryConfig:
        """Build a config from a mapping of options (:meth:`to_dict` output, a YAML file, flags).

        Args:
            data: ``{option: value}``; missing options take their defaults.
            what: how errors name the config (default: the class name).

        Raises:
            MemoryConfigError: for a mapping that is not one, an unknown option (listing the
                accepted ones) or an invalid value.
        """
        if not isinstance(data, dict):
            raise MemoryConfigError(f"options of {what or cls.__name__} must be a mapping, got {type(data).__name__}")
        accepted = cls.option_names()
        unknown = sorted(set(data) - set(accepted))
        if unknown:
            raise MemoryConfigError(
                f"unknown option(s) {', '.join(map(str, unknown))} for {what or cls.__name__}; "
                f"accepted: {', '.join(accepted)}"
            )
        return cls(**data)

    @classmethod
    def option_names(cls) -> list[str]:
        """The options, in declaration order."""
        return [f.name for f in fields(cls) if f.init]

    @classmethod
    def help(cls) -> dict[str, tuple[Any, str]]:
        """``{option: (default, help text)}`` in declaration order."""
        out = {}
        for f in fields(cls):
            if f.init:
                default = f.default if f.default is not MISSING else f.default_factory()
                out[f.name] = (list(default) if isinstance(default, tuple) else default, f.metadata.get("help", ""))
        return out

    def state_options(self) -> dict[str, Any]:
        """The options a saved state must have been made with to be loaded into this backend."""
        return {k: v for k, v in self.to_dict().items() if k not in self.STATE_EXCLUDED}
