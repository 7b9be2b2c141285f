"""Readability rules of the book, as functions over notebooks (used by tests/test_book.py).

Each function takes a notebook (the dict nbformat stores, executed or not) and
returns a list of problems, one readable line each; an empty list means the
notebook follows the rule. The rules are the book conventions every chapter
follows: lines that fit the column, figures that are captioned, described,
sharp, narrow and hidden behind a toggle, learning objectives, questions with
collapsed answers at the end of every section, and data paths Colab can reach.
"""

from __future__ import annotations

import base64
import re
import struct

#: The column shows about 90 characters of code; 88 leaves room for the prompt.
MAX_LINE = 88
#: Figures must be rendered at this resolution or more, and be at most this wide.
MIN_DPI = 150
MAX_WIDTH_IN = 7.5
# The inline backend saves with bbox_inches="tight", which pads the figure by 0.1 in on
# each side: a 7.5 in figure comes out 7.6-7.7 in wide.
WIDTH_SLACK_IN = 0.25

_SECTION = re.compile(r"^## (.+)$", re.MULTILINE)
_ANSWER = re.compile(r"^:::+\{dropdown\} Answer\s*$", re.MULTILINE)
_OBJECTIVES = re.compile(r":::+\{admonition\} Learning objectives\s*\n(.*?)\n:::", re.DOTALL)
_LIST_ITEM = re.compile(r"^\s*(?:[-*]|\d+\.)\s+\S", re.MULTILINE)
_FILE_LITERAL = re.compile(r"""["']([\w./-]+\.(?:npz|npy|csv|json|txt|pkl|pt|pth|png|jpg))["']""")
# Sections that close a chapter and carry no questions of their own.
_UNQUESTIONED_SECTIONS = re.compile(r"^(Summary|Exercise\b)", re.IGNORECASE)


def _source(cell: dict) -> str:
    return "".join(cell.get("source", []))


def _tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def long_lines(notebook: dict, name: str) -> list[str]:
    """Code lines and text-output lines wider than MAX_LINE characters."""
    problems = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        for number, line in enumerate(_source(cell).splitlines(), 1):
            if len(line) > MAX_LINE:
                problems.append(f"{name} cell {index} code line {number}: {len(line)} chars: {line[:60]}…")
        for line in _output_text_lines(cell):
            if len(line) > MAX_LINE:
                problems.append(f"{name} cell {index} output: {len(line)} chars: {line[:60]}…")
    return problems


def _output_text_lines(cell: dict) -> list[str]:
    """The text a reader sees in a cell's outputs (not the text stand-in of an image)."""
    lines = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            lines += "".join(output.get("text", "")).splitlines()
        elif output.get("output_type") == "error":
            lines += output.get("traceback", [])
        else:
            data = output.get("data", {})
            if "text/plain" in data and not any(k.startswith("image/") for k in data):
                lines += "".join(data["text/plain"]).splitlines()
    return lines


def _images(cell: dict) -> list[bytes]:
    images = []
    for output in cell.get("outputs", []):
        png = output.get("data", {}).get("image/png")
        if png:
            images.append(base64.b64decode("".join(png) if isinstance(png, list) else png))
    return images


def png_size_and_dpi(png: bytes) -> tuple[int, int, float | None]:
    """Width and height in pixels, and the resolution from the pHYs chunk (None if absent)."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("png: expected PNG data, got something else")
    width, height = struct.unpack(">II", png[16:24])
    position = 8
    while position < len(png):
        length, kind = struct.unpack(">I4s", png[position : position + 8])
        if kind == b"pHYs":
            per_x, _, unit = struct.unpack(">IIB", png[position + 8 : position + 17])
            return width, height, per_x * 0.0254 if unit == 1 else None
        if kind == b"IDAT":
            break  # pHYs must come before the image data
        position += 12 + length
    return width, height, None


def _looks_like_path(text: str) -> bool:
    return bool(re.search(r"[/\\]|\.(png|jpe?g|svg|gif)$", text.strip(), re.IGNORECASE))


def figure_problems(notebook: dict, name: str) -> list[str]:
    """Figures without caption, name, real alt text or hide-input, or too coarse or wide."""
    problems = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        where = f"{name} cell {index}"
        for line in _output_text_lines(cell):
            if "BookFigureWarning" in line:
                problems.append(f"{where}: {line.strip()}")
        images = _images(cell)
        if not images:
            continue
        if len(images) > 1:
            problems.append(f"{where}: {len(images)} figures in one cell (one per cell)")
        mystnb = cell.get("metadata", {}).get("mystnb", {})
        figure, image = mystnb.get("figure", {}), mystnb.get("image", {})
        caption, label, alt = figure.get("caption", ""), figure.get("name", ""), image.get("alt", "")
        if len(caption.split()) < 4:
            problems.append(f"{where}: figure without a caption (mystnb.figure.caption)")
        if not re.fullmatch(r"fig-[a-z0-9]+(-[a-z0-9]+)+", label):
            problems.append(f"{where}: figure name {label!r} is not fig-<chapter>-<figure>")
        if len(alt.split()) < 4 or _looks_like_path(alt):
            problems.append(f"{where}: alt text {alt!r} does not say what the figure shows")
        if "hide-input" not in _tags(cell):
            problems.append(f"{where}: plotting cell not tagged hide-input")
        for png in images:
            width, _, dpi = png_size_and_dpi(png)
            if dpi is None or dpi < MIN_DPI - 0.5:  # pHYs stores whole pixels per metre
                shown = "no" if dpi is None else f"{dpi:.0f}"
                problems.append(f"{where}: figure at {shown} dpi (at least {MIN_DPI})")
            elif width / dpi > MAX_WIDTH_IN + WIDTH_SLACK_IN:
                problems.append(f"{where}: figure {width / dpi:.1f} in wide (at most {MAX_WIDTH_IN})")
    return problems


def _markdown(notebook: dict) -> str:
    return "\n\n".join(_source(c) for c in notebook["cells"] if c["cell_type"] == "markdown")


def objectives_problems(notebook: dict, name: str) -> list[str]:
    """The chapter must open with a 'Learning objectives' admonition of 3-6 items."""
    first = next((c for c in notebook["cells"] if c["cell_type"] == "markdown"), None)
    match = _OBJECTIVES.search(_source(first)) if first else None
    if not match:
        return [f"{name}: no ':::{{admonition}} Learning objectives' in the opening cell"]
    count = len(_LIST_ITEM.findall(match.group(1)))
    return [] if 3 <= count <= 6 else [f"{name}: {count} learning objectives (expected 3 to 6)"]


def section_question_problems(notebook: dict, name: str) -> list[str]:
    """Every numbered section (## heading) ends with 1-3 questions, answers collapsed."""
    problems = []
    cells = [c for c in notebook["cells"] if c["cell_type"] in ("markdown", "code")]
    sections: list[tuple[str, list[dict]]] = []
    for cell in cells:
        source = _source(cell)
        headings = _SECTION.findall(source) if cell["cell_type"] == "markdown" else []
        if not headings:
            if sections:
                sections[-1][1].append(cell)
            continue
        # A cell may close one section and open the next: split it at each heading.
        pieces = _SECTION.split(source)
        if sections:
            sections[-1][1].append({"cell_type": "markdown", "source": pieces[0]})
        for title, body in zip(pieces[1::2], pieces[2::2], strict=True):
            sections.append((title.strip(), [{"cell_type": "markdown", "source": body}]))
    for title, body in sections:
        if _UNQUESTIONED_SECTIONS.match(title):
            continue
        answers = [i for i, c in enumerate(body) if c["cell_type"] == "markdown" and _ANSWER.search(_source(c))]
        count = sum(len(_ANSWER.findall(_source(body[i]))) for i in answers)
        if not 1 <= count <= 3:
            problems.append(f"{name} § {title!r}: {count} questions with a collapsed answer (expected 1-3)")
        elif any(c["cell_type"] == "code" for c in body[answers[-1] :]):
            problems.append(f"{name} § {title!r}: code after the questions (they must end the section)")
    return problems


def data_path_problems(notebook: dict, name: str, book_dir, provided: str = "data/") -> list[str]:
    """Files a chapter opens by relative path must exist and lie where Colab gets them."""
    problems = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code" or "remove-cell" in _tags(cell):
            continue
        for path in _FILE_LITERAL.findall(_source(cell)):
            if not path.startswith(provided):
                problems.append(f"{name} cell {index}: {path!r} is outside {provided} (Colab has no copy)")
            elif not (book_dir / path).is_file():
                problems.append(f"{name} cell {index}: {path!r} does not exist under book/")
    return problems


def markdown_text(notebook: dict) -> str:
    """All markdown of a notebook, for the searches the tests make."""
    return _markdown(notebook)
