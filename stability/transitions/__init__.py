"""Recurrent transition parameterizations, all behind one interface (:class:`Transition`)."""
from .base import Transition, available, create, get, option_defaults, option_names, register
from .householder import (householder_product, householder_product_reference, normalize_rows,
                          triangular_householder_product)
from . import dense, nonnormal, orthogonal, spectral  # noqa: F401  (register the built-ins)
from .dense import DenseTransition
from .nonnormal import NonNormalTransition
from .orthogonal import CayleyTransition, ExpRNNTransition, HouseholderTransition, orthogonal_log
from .spectral import SpectralTransition

__all__ = [
    "Transition", "available", "create", "get", "option_defaults", "option_names", "register",
    "householder_product", "householder_product_reference", "normalize_rows", "orthogonal_log",
    "triangular_householder_product",
    "DenseTransition", "ExpRNNTransition", "CayleyTransition", "HouseholderTransition",
    "SpectralTransition", "NonNormalTransition",
]
