"""llmclassify: turn a pretrained decoder LLM into a text classifier, and serve it."""

__version__ = "0.1.0"
