"""bncourse: the reference package of the Batch Normalization course.

One module per concern:

Reference implementations
- ``bncourse.cpu``: Batch Normalization in NumPy (float32 and float64), the
  functions students re-implement, with the paper's formulas in the docstrings.
- ``bncourse.gpu``: the same functions in device-agnostic PyTorch, plus
  ``BatchNormFunction`` (hand-written backward), ``batch_norm`` and drop-in
  ``BatchNorm1d``/``BatchNorm2d`` layers.
- ``bncourse.fused`` (the fused training path, ``impl="fused"``), ``bncourse.cpu_fast``
  (NumPy with fewer passes), ``bncourse.sync_batchnorm`` (``SyncBatchNorm`` across
  processes) and ``bncourse.hardware`` (the bytes-moved model and the benchmark's
  cached results): BN on real hardware, chapter 9.
- ``bncourse.initialization``, ``bncourse.flops``: references for the
  initialisation and whitening-cost assignments.

What the book uses
- ``bncourse.data``: the data sets (scikit-learn's bundled digits, generated
  data; nothing is downloaded).
- ``bncourse.plots``, ``bncourse.diagrams``: figures in one style.
- ``bncourse.deepnet``: the NumPy MLP (chapter 1 records per-layer statistics
  with it; assignment 06 trains it and the grader evaluates it).
- ``bncourse.train``, ``bncourse.experiments``: seeded PyTorch training and the
  cached experiments of chapters 6 and 7 (``python -m bncourse.experiments``).
- ``bncourse.finite_differences``, ``bncourse.timing``: gradient checking and
  honest side-by-side timings.

What the graded tests and the graders use
- ``bncourse.testing``: ``check`` (what a test cell calls);
  ``bncourse.checks``: every graded part of every assignment, and the framework
  they share (verdicts, the shortcut policy, the catalogue of known mistakes).
- ``bncourse.release``: regenerates ``exercises/`` from ``solutions/``.
- ``bncourse.grading``: the ``bncourse-grade`` pipeline for instructors.
"""

__version__ = "0.1.0"
