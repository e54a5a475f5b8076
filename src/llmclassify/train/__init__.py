"""Training: `train(TrainConfig) -> metrics`, everything from a data file to a run directory.

config.py    TrainConfig (the CLI's flags are its fields), presets
run.py       the stages of a run: prepare -> trunk pass -> baseline -> fit -> choose -> post-hoc -> save
finetune.py  fine-tuning the top on the frozen-trunk cache (the book's recipe), resumable
select.py    the probe stage and the choice between recipes (search.py has the protocol)
state.py     what the stages share

The config names import here; the stages (torch) on first use, so the CLI builds its parser and
predicts with an ONNX export without importing torch.
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

_STAGES = {"Features": "finetune", "batch_loss": "finetune", "class_weight_tensor": "finetune",
           "predict_features": "finetune", "resume": "run", "train": "run"}

__all__ = ["PRESETS", "RECIPES", "SPLITS", "TrainConfig", "config_from_args", "parse_padding", "with_preset",
           *_STAGES]


def __getattr__(name: str):
    if name in _STAGES:
        from importlib import import_module

        return getattr(import_module(f".{_STAGES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
