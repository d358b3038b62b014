"""Exceptions raised by :mod:`memory_bank`.

Every error is a :class:`ValueError` subclass, so callers that only know the
standard library can still catch bad input with ``except ValueError``.
"""


class MemoryBankError(ValueError):
    """Bad input given to a memory backend (shape, dtype, values, time order).

    A backend that raises it has not changed its state.
    """


class MemoryConfigError(MemoryBankError):
    """An invalid :class:`~memory_bank.config.MemoryBankConfig` setting."""
