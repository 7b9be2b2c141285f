"""``bncourse-grade``: grade a whole class of nbgrader notebooks fast, safely and honestly.

The pipeline, one module per step (nbgrader's preprocessor style):

- ``collect``: submissions (folder or .zip, LMS-style names) -> nbgrader's ``submitted/`` layout.
- ``validate``: each notebook against the assignment (cells deleted, changed, duplicated,
  wrong assignment) and an AST scan for tampering; builds what the sandbox runs.
- ``sandbox`` + ``harness``: run the student's cells and ``part.run`` in bubblewrap with limits.
- ``judge``: decide every case in the grader's own process (``part.judge``, shortcut scan).
- ``worker``: one submission end to end (the unit of work of the local pool and of Dask).
- ``gradebook``: the single writer: resume journal, nbgrader gradebook, grades.csv.
- ``feedback``: autograded notebooks and feedback HTML without hidden tests (MathJax offline).
- ``late``: due dates, extensions and penalties through nbgrader's late-submission plugins.
- ``similarity``: the closest pairs of solutions, a lead for a human.
- ``report``: one HTML page that says who struggled with what, plus the same tables as CSV.
- ``export``: grades for Canvas, Moodle, Gradescope and as one CSV.
- ``cli``: ``bncourse-grade``.
"""
