"""``bncourse-grade``: grade a whole class of nbgrader notebooks fast, safely and honestly.

The pipeline, one module per step (nbgrader's preprocessor style); README.md has the details:

- ``collect``: submissions (folder or .zip, LMS-style names) -> nbgrader's ``submitted/`` layout.
- ``validate``: each notebook against the released one (cells deleted, changed, duplicated,
  moved, wrong assignment); decides which cells run.
- ``integrity``: an AST scan of the student's own cells for tampering and for uses of the
  course's reference code (the policy of ``bncourse.checks.shortcuts``).
- ``harness`` (inside the sandbox) + ``sandbox`` + ``frames``: run the student's cells and
  every ``part.run`` in bubblewrap with limits; plain data comes back as frames.
- ``judge``: decide every case in the grader's own process (``part.judge``).
- ``worker``: one submission end to end (the unit of work of the pool and of Dask).
- ``seeds``: the course secret and each student's seed for their hidden cases (visible
  cases never change); the public case-set id.
- ``backends``: where workers run (this process, a local pool, Dask).
- ``course``, ``journal``, ``gradebook``: the course folder, the resume journal, and the single
  writer of nbgrader's gradebook and grades.csv.
- ``feedback``: autograded notebooks and feedback HTML without hidden tests (MathJax offline).
- ``late``: due dates, extensions and penalties through nbgrader's late-submission plugins.
- ``similarity``: the closest pairs of solutions, a lead for a human.
- ``report``: one HTML page that says who struggled with what, plus the same tables as CSV.
- ``export``: grades for Canvas, Moodle, Gradescope and as one CSV.
- ``cli``: ``bncourse-grade`` (the canary, progress, exit status).
"""
