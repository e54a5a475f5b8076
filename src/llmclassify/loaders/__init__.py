"""Model loaders: each turns a source into (ModelConfig, state dict in our names).

See docs/architecture.md for the names. `load_model(source)` dispatches on the source:
a preset name, a Hugging Face model directory, a Hub id, or a GGUF file.
"""
