"""The book as a reader sees it: a clean build (warnings are errors), then every page in Chromium.

The build runs once per test session into a temporary folder, exactly as
`make book` does (`jupyter-book build . -W -n --keep-going`), executing every
chapter. One screenshot per page is kept in artifacts/screenshots/ (not committed).
"""

from __future__ import annotations

import html.parser
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from browser import Browser, StaticServer

pytestmark = pytest.mark.slow  # end to end: deselect with -m "not slow" for a quick loop

ROOT = Path(__file__).resolve().parents[1]
JUPYTER_BOOK = Path(sys.executable).with_name("jupyter-book")
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
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
def built_book(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("book")
    proc = subprocess.run(
        [str(JUPYTER_BOOK), "build", str(ROOT), "--path-output", str(out), "-W", "-n", "--keep-going"],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    log = proc.stdout[-6000:] + proc.stderr[-6000:]
    assert proc.returncode == 0, f"jupyter-book build failed (warnings are errors):\n{log}"
    return out / "_build" / "html"


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


def test_every_page_renders_in_chromium(built_book: Path):
    pages = [p for p in sorted(built_book.rglob("*.html")) if _is_content_page(built_book, p)]
    assert len(pages) >= len(toc_files())
    problems = []
    with StaticServer(built_book) as server:
        browser = Browser()
        try:
            for page in pages:
                rel = page.relative_to(built_book).as_posix()
                shot = SCREENSHOTS / (rel.replace("/", "__").removesuffix(".html") + ".png")
                report = browser.open(server.base_url + rel, screenshot=shot)
                problems += _reader_problems(rel, report)
        finally:
            browser.close()
    assert not problems, "what a reader would see:\n" + "\n".join(problems)


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
