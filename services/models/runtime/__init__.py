"""Model runtime shared by training, evaluation and serving: prompt formats, loading, inference.

Imports torch/transformers lazily inside functions where a module is also used on light paths.
"""
