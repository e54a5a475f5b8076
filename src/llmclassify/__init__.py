"""llmclassify: turn a pretrained decoder LLM into a text classifier, and serve it.

`from llmclassify import LLMClassifier`: the scikit-learn estimator (estimator.py), imported on
first use, so `import llmclassify` loads neither scikit-learn nor torch."""

__version__ = "0.1.0"
__all__ = ["LLMClassifier"]


def __getattr__(name: str):
    if name == "LLMClassifier":
        from .estimator import LLMClassifier

        return LLMClassifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
