"""Training: `train(TrainConfig) -> metrics`, everything from a data file to a run directory.

config.py    TrainConfig (the CLI's flags are its fields), presets
run.py       the stages of a run: prepare -> trunk pass -> baseline -> fit -> choose -> post-hoc -> save
finetune.py  fine-tuning the top on the frozen-trunk cache (the book's recipe), resumable
select.py    the probe stage and the choice between recipes (search.py has the protocol)
state.py     what the stages share
"""

from .config import (
           PRESETS,
           RECIPES,
           SPLITS,
           TrainConfig,
           config_from_args,
           parse_padding,
           with_preset,
)
from .finetune import Features, batch_loss, class_weight_tensor, predict_features
from .run import resume, train

__all__ = ["PRESETS", "RECIPES", "SPLITS", "Features", "TrainConfig", "batch_loss", "class_weight_tensor",
           "config_from_args", "parse_padding", "predict_features", "resume", "train", "with_preset"]
