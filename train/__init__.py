"""Fine-tuning with memory: LoRA on the language model and a trainable FeatureAdapter,
trained on samples whose memory is built frame by frame exactly as at inference."""

from .config import TrainConfig, TrainConfigError, load_config
from .data import TrainingData, load_training_data
from .samples import StreamingSampler, TrainingSample, collate
from .trainer import TrainResult, count_parameters, prepare_model, train

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
