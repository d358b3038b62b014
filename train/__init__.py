"""Fine-tuning with memory: LoRA on the language model and a trainable FeatureAdapter,
trained on samples whose memory is built frame by frame exactly as at inference."""

from __future__ import annotations

from typing import TYPE_CHECKING

from videollama3.exports import lazy_exports

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

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
