"""The book as a reader sees it: a clean build (warnings are errors), then every page in Chromium.

The build runs once per test module into a temporary folder, exactly as
`make book` does (`jupyter-book build . -W -n --keep-going`), executing every
chapter; every test that needs the built site or the executed notebooks reuses
it. The readability rules (tests/book_checks.py) are checked on the executed
notebooks of every document in _toc.yml; the rules that concern only the
sources (objectives, questions, labels, addresses) run without a build.
Each page is opened at 1400 px (desktop) and 400 px (phone); a screenshot of the
top of each page, and one of its first figure, are kept in
artifacts/screenshots/<width>/ (not committed) for a person to look through.
"""

from __future__ import annotations

import ast
import base64
import html.parser
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import book_checks
import pytest
import yaml
from browser import Browser, StaticServer

from bncourse import book_urls

pytestmark = pytest.mark.slow  # end to end: deselect with -m "not slow" for a quick loop

ROOT = Path(__file__).resolve().parents[1]
JUPYTER_BOOK = Path(sys.executable).with_name("jupyter-book")
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
WIDTHS = {"desktop": 1400, "mobile": 400}
# Pages Sphinx adds by itself; they carry no chapter content.
GENERATED_PAGES = {"genindex.html", "search.html"}


def toc_files() -> list[str]:
    """Every document named in _toc.yml, without suffix, e.g. 'book/03_bn_transform'."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return files


@pytest.fixture(scope="module")
def built_book() -> Iterator[Path]:
    # Not tmp_path_factory: pytest keeps only its three latest base folders, so on a machine
    # shared with other pytest sessions this long build could be deleted while in use.
    with tempfile.TemporaryDirectory(prefix="bncourse-book-") as folder:
        yield _build(Path(folder))


def _build(out: Path) -> Path:
    proc = subprocess.run(
        [str(JUPYTER_BOOK), "build", str(ROOT), "--path-output", str(out), "-W", "-n", "--keep-going"],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    log = proc.stdout[-6000:] + proc.stderr[-6000:]
    assert proc.returncode == 0, f"jupyter-book build failed (warnings are errors):\n{log}"
    return out / "_build" / "html"


@pytest.fixture(scope="module")
def executed(built_book: Path) -> dict[str, dict]:
    """The executed notebook of every notebook document in the toc, by file name."""
    folder = built_book.parent / "jupyter_execute"
    notebooks = {}
    for doc in toc_files():
        if (ROOT / f"{doc}.ipynb").is_file():
            notebooks[Path(doc).name] = json.loads((folder / f"{doc}.ipynb").read_text(encoding="utf-8"))
    assert notebooks, f"no executed notebooks under {folder}"
    return notebooks


def _sources(suffix: str = ".ipynb") -> dict[str, dict]:
    """The committed notebook of every notebook document in the toc, by file name."""
    return {
        Path(doc).name: json.loads((ROOT / f"{doc}{suffix}").read_text(encoding="utf-8"))
        for doc in toc_files()
        if (ROOT / f"{doc}{suffix}").is_file()
    }


def _chapters() -> dict[str, dict]:
    """The numbered chapters (book/NN_*.ipynb), which carry objectives and questions."""
    return {name: nb for name, nb in _sources().items() if name[:2].isdigit()}


def test_every_toc_document_is_built(built_book: Path):
    missing = [f for f in toc_files() if not (built_book / f"{f}.html").is_file()]
    assert not missing, f"documents in _toc.yml with no page in the build: {missing}"


def test_chapters_are_not_built_from_outside_the_toc(built_book: Path):
    # only_build_toc_files: the graded notebooks must never be published.
    stray = [p for p in ("solutions", "exercises", "tests") if (built_book / p).exists()]
    assert not stray, f"folders published although not in the toc: {stray}"


def test_mathjax_is_served_by_the_site(built_book: Path):
    pages_with_math = 0
    for page in built_book.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        scripts = [s for s in _attributes(text, "script", "src") if "mathjax" in s.lower()]
        remote = [s for s in scripts if s.startswith(("http:", "https:", "//"))]
        assert not remote, f"{page.name}: MathJax comes from a CDN, unreachable offline: {remote}"
        if 'class="math' in text:
            pages_with_math += 1
            assert scripts, f"{page.name} has formulas but loads no MathJax"
            for src in scripts:
                assert (page.parent / urlsplit(src).path).resolve().is_file(), src
    assert pages_with_math > 0, "no page of the book has a formula"


def test_internal_links_resolve(built_book: Path):
    broken = []
    for page in sorted(built_book.rglob("*.html")):
        if not _is_content_page(built_book, page) and page.name not in GENERATED_PAGES:
            continue  # theme templates under _static/, not pages
        text = page.read_text(encoding="utf-8")
        for tag, attr in (("a", "href"), ("img", "src"), ("script", "src"), ("link", "href")):
            for url in _attributes(text, tag, attr):
                problem = _check_local_url(built_book, page, url)
                if problem:
                    broken.append(f"{page.relative_to(built_book)}: {url} ({problem})")
    assert not broken, "broken internal links:\n" + "\n".join(broken[:40])


def test_every_page_renders_in_chromium_on_desktop_and_phone(built_book: Path):
    pages = [p for p in sorted(built_book.rglob("*.html")) if _is_content_page(built_book, p)]
    assert len(pages) >= len(toc_files())
    problems = []
    with StaticServer(built_book) as server:
        browser = Browser()
        try:
            for width in WIDTHS.values():
                browser.set_width(width)
                for page in pages:
                    rel = page.relative_to(built_book).as_posix()
                    name = rel.replace("/", "__").removesuffix(".html") + ".png"
                    folder = SCREENSHOTS / str(width)
                    report = browser.open(server.base_url + rel, screenshot=folder / name)
                    # a second view of each page with figures: its first figure and caption
                    browser.screenshot_at("figure", folder / name.replace(".png", "__figure.png"))
                    problems += _reader_problems(f"{rel} at {width} px", report)
                    problems += _layout_problems(f"{rel} at {width} px", report, width)
        finally:
            browser.close()
    assert not problems, "what a reader would see:\n" + "\n".join(problems)


def _layout_problems(where: str, report, width: int) -> list[str]:
    problems = []
    # pydata-sphinx-theme >= 0.17 under sphinx-book-theme draws a second, full-width
    # search header above the layout; the pinned pair keeps that navbar empty.
    if report.topbar_height > 1:
        problems.append(f"{where}: a {report.topbar_height:.0f} px header above the layout")
    if report.search_fields > 1:
        problems.append(f"{where}: {report.search_fields} search fields (one is enough)")
    if report.overflow_x > 1:
        problems.append(f"{where}: the page is {report.overflow_x} px wider than the window")
    return problems


def _reader_problems(rel: str, report) -> list[str]:
    problems = []
    if report.math_count and not report.mathjax_loaded:
        problems.append(f"{rel}: {report.math_count} formulas but MathJax did not load")
    if report.untypeset:
        problems.append(f"{rel}: math not typeset: {report.untypeset[:3]}")
    if report.math_errors:
        problems.append(f"{rel}: MathJax errors: {report.math_errors[:3]}")
    if report.broken_images:
        problems.append(f"{rel}: images that did not load: {report.broken_images[:3]}")
    if report.console_errors:
        problems.append(f"{rel}: console errors: {report.console_errors[:3]}")
    return problems


def _is_content_page(root: Path, page: Path) -> bool:
    rel = page.relative_to(root)
    return rel.parts[0] not in {"_static", "_sources", "_images"} and rel.name not in GENERATED_PAGES


class _AttributeCollector(html.parser.HTMLParser):
    """Collect one attribute of one tag (``tag=None``: of every tag)."""

    def __init__(self, tag: str | None, attr: str):
        super().__init__()
        self.tag, self.attr, self.values = tag, attr, []

    def handle_starttag(self, tag, attrs):
        if self.tag is None or tag == self.tag:
            self.values += [v for k, v in attrs if k == self.attr and v]


def _attributes(text: str, tag: str | None, attr: str) -> list[str]:
    collector = _AttributeCollector(tag, attr)
    collector.feed(text)
    return collector.values


def _ids(page: Path) -> set[str]:
    text = page.read_text(encoding="utf-8")
    return set(_attributes(text, None, "id")) | set(_attributes(text, "a", "name"))


def _check_local_url(root: Path, page: Path, url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme or url.startswith(("//", "mailto:", "javascript:", "data:")):
        return None
    target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
    if target.is_dir():
        target = target / "index.html"
    if not target.exists():
        return "no such file"
    if parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in _ids(target):
        return f"no anchor #{parts.fragment}"
    return None


# --- Readability of the executed notebooks (book conventions 1-4) -----------------------


def test_no_code_or_output_line_is_wider_than_the_column(executed):
    problems = [p for name, nb in executed.items() for p in book_checks.long_lines(nb, name)]
    assert not problems, f"lines over {book_checks.MAX_LINE} characters:\n" + "\n".join(problems)


def test_every_figure_is_captioned_described_hidden_sharp_and_narrow(executed):
    problems = [p for name, nb in executed.items() for p in book_checks.figure_problems(nb, name)]
    assert not problems, "figures a reader cannot read well:\n" + "\n".join(problems)


def test_every_figure_is_numbered_with_its_caption_and_alt_text_in_the_page(built_book, executed):
    problems = []
    for doc in toc_files():
        name = Path(doc).name
        if name not in executed:
            continue
        text = (built_book / f"{doc}.html").read_text(encoding="utf-8")
        alts = set(_attributes(text, "img", "alt"))
        for cell in executed[name]["cells"]:
            figure = cell.get("metadata", {}).get("mystnb", {}).get("figure")
            if not figure or not figure.get("name"):
                continue
            if f'id="{figure["name"]}"' not in text or "caption-number" not in text:
                problems.append(f"{doc}: figure {figure['name']} has no numbered caption in the page")
            alt = cell["metadata"]["mystnb"].get("image", {}).get("alt", "")
            if alt not in alts:
                problems.append(f"{doc}: figure {figure['name']}: its alt text is not on the image")
    assert not problems, "\n".join(problems)


# --- Structure of the chapters (book conventions 5-7) ------------------------------------


def test_chapters_open_with_learning_objectives():
    problems = [p for name, nb in _chapters().items() for p in book_checks.objectives_problems(nb, name)]
    assert not problems, "\n".join(problems)


def test_every_section_ends_with_questions_and_collapsed_answers():
    problems = [
        p for name, nb in _chapters().items() for p in book_checks.section_question_problems(nb, name)
    ]
    assert not problems, "\n".join(problems)


CANONICAL_LABELS = {
    "sec-hard-sigmoid-linear": "01_hard_to_train",
    "sec-bn-identity": "03_bn_transform",
    "sec-bn-scale-invariance": "03_bn_transform",
    "sec-inference-eval-mode": "05_inference",
}


@pytest.mark.parametrize("label", sorted(CANONICAL_LABELS))
def test_each_canonical_demonstration_has_its_label_in_its_chapter(label):
    owners = [
        name for name, nb in _sources().items() if f"({label})=" in book_checks.markdown_text(nb)
    ]
    assert owners == [CANONICAL_LABELS[label]], f"({label})= is defined in {owners or 'no chapter'}"


def test_no_chapter_uses_eval_mode_before_chapter_5_introduces_it():
    eval_mode = re.compile(r"\.eval\(\)|\.train\(False\)|batchnorm_inference|\.inference\(")
    early = []
    for name, nb in _chapters().items():
        if name < "05":
            for index, cell in enumerate(nb["cells"]):
                if cell["cell_type"] == "code" and eval_mode.search("".join(cell["source"])):
                    early.append(f"{name} cell {index}")
    assert not early, f"eval mode used before chapter 5 introduces it: {early}"


def test_chapters_load_data_only_from_where_colab_finds_it():
    problems = [
        p
        for name, nb in _sources().items()
        for p in book_checks.data_path_problems(nb, name, ROOT / "book")
    ]
    # The install cell links the repository's book/data as data/ in Colab.
    assert 'os.symlink(os.path.join("bncourse-src", "book", "data"), "data")' in (
        book_urls.install_cell_source(book_urls.read_urls())
    )
    assert not problems, "\n".join(problems)


# --- Addresses: all from _config.yml, none a placeholder ----------------------------------


def test_the_install_cell_is_valid_python_that_installs_only_where_bncourse_is_missing():
    source = book_urls.install_cell_source(book_urls.read_urls())
    tree = ast.parse(source)  # a syntax error would only show in Colab
    guard = tree.body[-1]
    assert isinstance(guard, ast.If) and "find_spec('bncourse') is None" in ast.unparse(guard.test)
    assert all(len(line) <= book_checks.MAX_LINE for line in source.splitlines())


def test_install_cells_and_repository_links_agree_with_the_config():
    problems = book_urls.problems(ROOT)
    assert not problems, "run `python -m bncourse.book_urls`:\n" + "\n".join(problems)


def _address_problem(url: str, urls: book_urls.BookUrls) -> str | None:
    """Why a link of the site disagrees with _config.yml (None when it agrees)."""
    if book_urls.PLACEHOLDER_PATTERN.search(url):
        return "placeholder address"
    owner_name = urls.repository.removeprefix("https://github.com/")
    host = urlsplit(url).netloc
    expected = {
        urlsplit(urls.binderhub or "").netloc: f"{urls.binderhub}/v2/gh/{owner_name}/{urls.branch}?",
        urlsplit(urls.colab or "").netloc: f"{urls.colab}/github/{owner_name}/blob/{urls.branch}/",
    }
    if host and host in expected and not url.startswith(expected[host]):
        return f"expected it to start with {expected[host]}"
    owner = owner_name.split("/")[0]
    ours = host == "github.com" and urlsplit(url).path.startswith(f"/{owner}/")
    if ours and not url.startswith(urls.repository):
        return f"expected it under {urls.repository}"
    return None


def test_launch_buttons_and_links_in_the_site_come_from_the_config(built_book):
    urls = book_urls.read_urls(ROOT / "_config.yml")
    problems, hub_links, launch_links = [], 0, 0
    for page in sorted(built_book.rglob("*.html")):
        if not _is_content_page(built_book, page):
            continue
        for url in _attributes(page.read_text(encoding="utf-8"), "a", "href"):
            problem = _address_problem(url, urls)
            if problem:
                problems.append(f"{page.relative_to(built_book)}: {url}: {problem}")
            hub_links += "hub/user-redirect" in url
            launch_links += url.startswith((urls.binderhub or "-", urls.colab or "-"))
    assert launch_links > 0, "no Binder or Colab button in the site"
    if urls.jupyterhub is None:
        assert hub_links == 0, "a JupyterHub button although _config.yml sets no hub"
    assert not problems, "\n".join(problems[:30])


def test_the_address_check_catches_a_placeholder_and_a_stale_link(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "exercises").mkdir()
    config = (ROOT / "_config.yml").read_text(encoding="utf-8")
    link = book_urls.read_urls().file_url("exercises")
    assert "branch: main" in config
    (tmp_path / "_config.yml").write_text(config.replace("branch: main", "branch: spring"), encoding="utf-8")
    chapter = _notebook(_md(f"[the exercises]({link})"))
    (tmp_path / "book" / "01_x.ipynb").write_text(json.dumps(chapter), encoding="utf-8")
    found = book_urls.problems(tmp_path)
    assert any("not the install cell" in p for p in found), found
    assert any("link into the repository" in p for p in found), found
    book_urls.write_chapters(tmp_path)
    assert book_urls.problems(tmp_path) == []
    assert "/blob/spring/exercises" in (tmp_path / "book" / "01_x.ipynb").read_text(encoding="utf-8")
    colab = 'colab_url: "https://colab.research.google.com"'
    assert colab in config
    hub = config.replace(colab, colab + '\n  jupyterhub_url: "https://hub.example.org"')
    (tmp_path / "_config.yml").write_text(hub, encoding="utf-8")
    assert any("placeholder" in p for p in book_urls.problems(tmp_path))
    assert _address_problem("https://hub.example.org/hub/user-redirect", book_urls.read_urls())


# --- The checks themselves catch what they are for -----------------------------------------


def _notebook(*cells: dict) -> dict:
    return {"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _code(source: str, outputs=(), metadata=None) -> dict:
    return {"cell_type": "code", "source": source, "outputs": list(outputs), "metadata": metadata or {}}


def _md(source: str) -> dict:
    return {"cell_type": "markdown", "source": source, "metadata": {}}


def _png(width_px: int, dpi: float) -> str:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(width_px / dpi, 1), dpi=dpi)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def test_the_line_check_catches_a_wide_code_line_and_a_wide_output_line():
    wide = "x" * (book_checks.MAX_LINE + 1)
    notebook = _notebook(
        _code("ok = 1\n" + wide),
        _code("print()", [{"output_type": "stream", "name": "stdout", "text": [wide + "\n"]}]),
        _code("fits", [{"output_type": "stream", "name": "stdout", "text": ["x" * book_checks.MAX_LINE]}]),
    )
    problems = book_checks.long_lines(notebook, "nb")
    assert len(problems) == 2 and "cell 0 code line 2" in problems[0] and "cell 1 output" in problems[1]


def test_the_figure_check_catches_each_missing_piece():
    good_meta = {
        "tags": ["hide-input"],
        "mystnb": {
            "figure": {"caption": "Loss falls faster with BN.", "name": "fig-ch-loss"},
            "image": {"alt": "Two training-loss curves, the BN one lower"},
        },
    }
    image = {"output_type": "display_data", "data": {"image/png": _png(1050, 150)}, "metadata": {}}
    assert book_checks.figure_problems(_notebook(_code("plot()", [image], good_meta)), "nb") == []
    cases = {
        "without a caption": {**good_meta, "mystnb": {**good_meta["mystnb"], "figure": {"name": "fig-ch-a"}}},
        "alt text": {**good_meta, "mystnb": {**good_meta["mystnb"], "image": {"alt": "_build/fig.png"}}},
        "hide-input": {**good_meta, "tags": []},
    }
    for expected, metadata in cases.items():
        problems = book_checks.figure_problems(_notebook(_code("plot()", [image], metadata)), "nb")
        assert any(expected in p for p in problems), (expected, problems)
    coarse = {"output_type": "display_data", "data": {"image/png": _png(700, 100)}, "metadata": {}}
    wide = {"output_type": "display_data", "data": {"image/png": _png(1950, 150)}, "metadata": {}}
    assert any("100" in p for p in book_checks.figure_problems(_notebook(_code("", [coarse], good_meta)), "n"))
    assert any("13.0 in" in p for p in book_checks.figure_problems(_notebook(_code("", [wide], good_meta)), "n"))


def test_the_structure_checks_catch_missing_objectives_and_questions():
    answer = ":::{dropdown} Answer\nBecause.\n:::"
    good = _notebook(
        _md("# T\n\n:::{admonition} Learning objectives\n- one\n- two\n- three\n:::\n\n## A\ntext"),
        _code("x = 1"),
        _md(f"1. Why?\n\n{answer}\n\n## Summary\n- done"),
    )
    assert book_checks.objectives_problems(good, "nb") == []
    assert book_checks.section_question_problems(good, "nb") == []
    no_questions = _notebook(_md("# T\n\n## A\ntext\n\n## B\n" + answer), _code("y = 2"))
    problems = book_checks.section_question_problems(no_questions, "nb")
    assert any("'A': 0 questions" in p for p in problems)
    assert any("'B'" in p and "code after" in p for p in problems)
    assert book_checks.objectives_problems(no_questions, "nb")


def test_the_data_path_check_catches_a_path_colab_cannot_reach(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "run.npz").write_bytes(b"")
    notebook = _notebook(_code('a = load("data/run.npz")\nb = load("../results/run.npz")\nc = load("data/x.npz")'))
    problems = book_checks.data_path_problems(notebook, "nb", tmp_path)
    assert len(problems) == 2 and "../results" in problems[0] and "does not exist" in problems[1]
