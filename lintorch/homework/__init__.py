"""A homework kit: students write the lecture's losses and gradients, and lintorch grades them.

    python -m lintorch.homework init DIR          a student folder: linear_classifier.py + README
    python -m lintorch.homework check DIR         grade it, function by function, with a score
    python -m lintorch.homework train DIR         train a linear classifier with the student's loss
    python -m lintorch.homework sweep DIR --lr .. --reg ..   the same over a grid

The student's file is generated from ``reference.py``, lintorch's own solution (each function
calls lintorch's losses and backwards): its docstrings are the tasks, its bodies become stubs.
``checks.py`` holds the checks of each function, ``grade.py`` runs them in a child process (a
hang or a crash fails one item only), ``training.py`` plugs a student's loss into lintorch's loop.
"""

KIT_VERSION = "1"

# The functions a student writes, in the order they are graded.
ITEMS = ("svm_loss_naive", "svm_loss_vectorized", "softmax_loss_naive",
         "softmax_loss_vectorized", "linear_backward", "sigmoid_grad", "numerical_gradient",
         "sgd_step")

STUDENT_FILE = "linear_classifier.py"


def version_line() -> str:
    """Which kit graded: a grade quotes it."""
    import lintorch

    return f"lintorch homework kit {KIT_VERSION} (lintorch {lintorch.__version__})"
