"""Sphinx extension: drop repeated <script> entries from each page.

sphinx-thebe registers its inline configuration script every time Sphinx reads
documents, and Jupyter Book's build reads them more than once, so every page
declared `const THEBE_JS_URL` twice and the browser reported a SyntaxError.
Removing exact repeats (same file and same inline body) fixes the page without
touching what each script does.
"""

from __future__ import annotations


def _drop_repeated_scripts(app, pagename, templatename, context, doctree) -> None:
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # An inline script's file name is None from one extension and "" from
        # another; both mean "no file", so they must compare equal.
        filename = getattr(script, "filename", script) or ""
        key = (str(filename), tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    # Priority 900: after the theme and extensions have filled the context.
    app.connect("html-page-context", _drop_repeated_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
