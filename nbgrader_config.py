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
