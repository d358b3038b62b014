"""Fine-tuning with memory: LoRA on the language model and a trainable FeatureAdapter,
trained on samples whose memory is built frame by frame exactly as at inference."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import TrainConfig, TrainConfigError, load_config
    from .data import TrainingData, load_training_data
    from .samples import StreamingSampler, TrainingSample, collate
    from .trainer import TrainResult, count_parameters, prepare_model, train

_EXPORTS = {
    "TrainConfig": "config",
    "TrainConfigError": "config",
    "load_config": "config",
    "TrainingData": "data",
    "load_training_data": "data",
    "StreamingSampler": "samples",
    "TrainingSample": "samples",
    "collate": "samples",
    "TrainResult": "trainer",
    "count_parameters": "trainer",
    "prepare_model": "trainer",
    "train": "trainer",
}
"""Each public name and the submodule it comes from, imported when first used
(a command's ``--help`` does not load peft and transformers)."""

__all__ = [
    "StreamingSampler",
    "TrainConfig",
    "TrainConfigError",
    "TrainResult",
    "TrainingData",
    "TrainingSample",
    "collate",
    "count_parameters",
    "load_config",
    "load_training_data",
    "prepare_model",
    "train",
]


def __getattr__(name: str) -> Any:
    """The public name ``name`` from its submodule, or the submodule ``name``, imported now (PEP 562).

    Raises:
        AttributeError: for a name that is neither.
    """
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
    else:
        try:
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names, the public ones not imported yet included."""
    return sorted({*globals(), *__all__})
