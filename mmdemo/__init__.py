"""mmdemo: a multimodal demo app (VQA chat, gallery search, zero-shot classification).

Importing the package is cheap: torch, transformers and gradio are imported only by the
modules that need them, when they are used.
"""

__version__ = "0.1.0"
