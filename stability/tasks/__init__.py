"""Tasks: data, loss, baseline and metrics, behind one small interface (:class:`Task`).

``create(name, **options)`` builds one, ``available()`` lists the names:

- ``copy``: remember K = 10 symbols across a delay T (cross-entropy; baseline 10·log 8/(T + 20)).
- ``adding``: sum two marked values (MSE of the last output; baseline 1/6).
- ``ptb`` / ``ptb_char``: Penn Treebank language modelling (perplexity / bits per character).
- ``pixels``: sequential or permuted pixel classification (8×8 digits built in, or MNIST files).

Train any of them with :func:`stability.train.train`.
"""
from .base import EVAL_SEEDS, Task, available, create, get, option_defaults, option_names, register
from . import adding, copy, pixels, ptb  # noqa: F401  (register the built-ins)
from .adding import AddingTask
from .copy import CopyTask
from .pixels import PixelsTask
from .ptb import LanguageModelTask, PTBCharTask, PTBWordTask

__all__ = [
    "Task", "available", "create", "get", "option_defaults", "option_names", "register", "EVAL_SEEDS",
    "AddingTask", "CopyTask", "PixelsTask", "LanguageModelTask", "PTBWordTask", "PTBCharTask",
]
