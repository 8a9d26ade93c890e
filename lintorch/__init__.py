"""lintorch: linear classification and gradient descent in PyTorch, gradients written by hand."""

from .gradcheck import GradEntry, check_entries, grad_check, numerical_gradient, relative_error
from .losses import (
    CrossEntropyLoss,
    MSELoss,
    SVMLoss,
    cross_entropy,
    l1_penalty,
    l2_penalty,
    mse_loss,
    softmax,
    svm_loss,
)
from .models import LinearClassifier, SigmoidMLP, append_ones, linear, sigmoid
from .update_rules import sgd_step

__version__ = "0.1.0"

__all__ = [
    "CrossEntropyLoss", "GradEntry", "LinearClassifier", "MSELoss", "SVMLoss", "SigmoidMLP",
    "append_ones", "check_entries", "cross_entropy", "grad_check", "l1_penalty", "l2_penalty",
    "linear", "mse_loss", "numerical_gradient", "relative_error", "sgd_step", "sigmoid", "softmax",
    "svm_loss",
]
