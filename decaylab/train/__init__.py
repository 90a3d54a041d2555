"""Training: configuration, optimizer and schedules, checkpoints, data parallelism, the step, the loop.

    from decaylab.train import load_config, train
    final = train(load_config("configs/train/tiny.yaml", ["steps=200", "run_dir=runs/x"]))
"""

from decaylab.train.config import ConfigError, TrainConfig, load_config
from decaylab.train.loop import TrainingDiverged, train
from decaylab.train.step import evaluate

__all__ = ["ConfigError", "TrainConfig", "TrainingDiverged", "evaluate", "load_config", "train"]
