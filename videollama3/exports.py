"""Lazy public names for a package's ``__init__`` (PEP 562), shared by ``videollama3``, ``eval`` and ``train``.

A package lists each public name with the submodule that defines it; the submodule is imported when
the name is first used, so importing the package (or a light submodule of it, such as a CLI module
building its parser) does not import transformers, peft or PyAV.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package``.

    Args:
        package: the package's ``__name__``.
        exports: each public name -> the submodule (relative, without the dot) that defines it
            (the package's ``__all__`` is ``list(exports)``).

    Returns:
        ``(__getattr__, __dir__)``. ``__getattr__(name)`` imports ``name`` from its submodule, or the
        submodule ``name`` itself, and keeps it in the package's namespace, so it is looked up once.
        It raises :class:`AttributeError` for a name that is neither.
    """

    def __getattr__(name: str) -> Any:
        """``name`` from its submodule, or the submodule ``name``, imported now."""
        module = exports.get(name)
        if module is not None:
            value = getattr(importlib.import_module(f".{module}", package), name)
        else:
            try:
                value = importlib.import_module(f".{name}", package)
            except ModuleNotFoundError as e:
                if e.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        """The package's names, the public ones not imported yet included."""
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
