"""nbgrader configuration of the course (nbgrader 0.9.6).

Instructor versions live in ``solutions/<assignment>/``; ``nbgrader generate_assignment``
writes the student versions to ``exercises/<assignment>/``.  Regenerate them with
``make exercises`` and never edit ``exercises/`` by hand.
"""

import os

c = get_config()  # noqa: F821  (injected by traitlets when nbgrader loads this file)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "bncourse"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(c.CourseDirectory.root, "gradebook.db")

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Feedback shows students their results but not the hidden tests: nbgrader's ClearHiddenTests
# removes the hidden regions from the autograded cells' source (nbgrader keeps them by
# default), and HideTestTracebacks cuts each error in a test cell down to its last line, the
# check's message (a traceback would quote the hidden line that raised it).
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.preprocessors import ClearHiddenTests, GetGrades  # noqa: E402

from bncourse.release import HideTestTracebacks  # noqa: E402

c.GenerateFeedback.preprocessors = [
    GetGrades,
    ClearHiddenTests,
    HideTestTracebacks,
    CSSHTMLHeaderPreprocessor,
]

# Test cells take seconds; 60 s per cell (nbgrader's default is 30) leaves room for the
# training checks of assignment 06 on a slow, shared grading machine, without letting an
# endless loop stall a class.
c.Execute.timeout = 60
