"""tlcourse — the companion package of the course *Transfer Learning for Vision and Language*.

Plain PyTorch pieces, one module per idea: data (offline datasets and domain shifts), models
(shipped pretrained backbone, text encoders, LoRA), train (fit/evaluate/predict), finetune,
multitask, adapt, multimodal, distill, metrics and plots.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
