"""bncourse: the reference package of the Batch Normalization course.

Modules (one concern each):

- ``bncourse.cpu``: NumPy reference implementations (float32 and float64).
- ``bncourse.gpu``: the same functions in device-agnostic PyTorch, plus an
  autograd Function and drop-in ``BatchNorm1d``/``BatchNorm2d`` layers.
- ``bncourse.data``: the data sets the book and the exercises use (nothing is
  downloaded: scikit-learn's bundled digits, or data generated from a seed).
- ``bncourse.testing``: checks and diagnostics that the graded tests call.
- ``bncourse.grading``: the ``bncourse-grade`` pipeline for instructors.
"""

__version__ = "0.1.0"
