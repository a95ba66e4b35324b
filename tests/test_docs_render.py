"""The docs site shows its diagram and formulas with no network: formulas are MathML written at
build time (docs/hooks/mathml.py), the diagram is HTML and CSS, and no page loads a script, a
stylesheet or a font from off the machine. The last test renders every page in headless Chromium
(docs/check_render.py); it is skipped where Chromium is not installed
(``apt-get install -y chromium``)."""

import doctest
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


check_render = _load("check_render", ROOT / "docs" / "check_render.py")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for this module with ``mkdocs build --strict``."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings_handlers.python")
    pytest.importorskip("latex2mathml")
    folder = tmp_path_factory.mktemp("docs") / "site"
    check_render.build(folder)
    return folder


# -- the detection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dom", "expected"),
    [
        ('<pre class="mermaid"><code>flowchart LR\n a --> b</code></pre>', "Mermaid block"),
        ("<div><p>Intro</p><pre><code>flowchart LR\n  a --> b</code></pre></div>", "diagram"),
        ("<p>graph TD</p>", "diagram source"),
        ('<span class="arithmatex">\\(\\delta\\)</span>', "left for a script"),
        ("<p>the step \\(\\delta \\leftarrow \\delta + g\\)</p>", "TeX source"),
        ("<p>$$L = \\frac{1}{b}$$</p>", "TeX source"),
        ("<li>budget \\epsilon_p</li>", "TeX source"),
    ],
)
def test_source_left_as_text_is_found(dom: str, expected: str) -> None:
    problems = check_render.source_left(f"<html><body><article>{dom}</article></body></html>")
    assert problems and any(expected in p for p in problems), problems


def test_drawn_formulas_code_and_plain_words_pass() -> None:
    dom = (
        "<article><p>A flowchart of the step: <math><mi>δ</mi><mo>←</mo></math>.</p>"
        '<pre><code>print("a\\n")  # \\delta in a string</code></pre>'
        "<p>the path C:\\ and a price of $5</p></article>"
    )
    assert check_render.source_left(dom) == []


def test_the_check_scripts_examples_hold() -> None:
    assert doctest.testmod(check_render).failed == 0


# -- the formulas, converted at build time ----------------------------------------------------


def test_math_hook_writes_mathml_and_refuses_what_it_cannot_convert() -> None:
    pytest.importorskip("latex2mathml")
    hook = _load("docs_mathml_hook", ROOT / "docs" / "hooks" / "mathml.py")
    page = '<p>step <span class="arithmatex">\\(\\delta &lt; \\epsilon\\)</span></p>'
    html = hook.on_page_content(page, page=None)
    assert "arithmatex" not in html and "<math" in html and "<mo>&#x0003C;</mo>" in html
    block = hook.on_page_content('<div class="arithmatex">\\[\\frac{1}{b}\\]</div>', page=None)
    assert 'display="block"' in block and "<mfrac>" in block
    with pytest.raises(ValueError, match=r"does not know \['\\\\arg'\]"):
        hook.on_page_content('<span class="arithmatex">\\(\\arg\\max_p x\\)</span>', page=None)


# -- the built site ------------------------------------------------------------------------------


_EXTERNAL = re.compile(
    r"<(?:script|link|img|iframe|source|video|audio)\b[^>]*\b(?:src|href)=\"(?:https?:)?//[^\"]+",
    re.I,
)


def test_no_page_loads_anything_from_off_the_machine(site: Path) -> None:
    """Links to other sites are fine; a script, stylesheet, font or image from one is not."""
    loads = {}
    for page in site.rglob("*.html"):
        found = _EXTERNAL.findall(page.read_text())
        if found:
            loads[page.relative_to(site).as_posix()] = sorted(set(found))
    for sheet in site.rglob("*.css"):
        found = re.findall(r"(?:@import|url\()\s*[\"']?(?:https?:)?//[^\"')]+", sheet.read_text())
        if found:
            loads[sheet.relative_to(site).as_posix()] = sorted(set(found))
    assert not loads, loads


def test_every_formula_is_mathml_and_the_home_diagram_is_html(site: Path) -> None:
    concepts = (site / "concepts" / "index.html").read_text()
    assert "arithmatex" not in concepts
    assert concepts.count("<math") > 50
    home = (site / "index.html").read_text()
    assert 'class="mr-flow"' in home and "flowchart" not in home and "mermaid" not in home


# -- in a real browser ---------------------------------------------------------------------------


def test_every_page_renders_offline_in_headless_chromium(site: Path, tmp_path: Path) -> None:
    """Every page, opened in headless Chromium with no network, shows no diagram or TeX source
    and asks for nothing off 127.0.0.1; home and concepts are screenshotted."""
    browser = check_render.find_chromium()
    if browser is None:
        pytest.skip("no chromium on PATH: `apt-get install -y chromium` to run this check")
    results = check_render.check(site, tmp_path / "render", browser)
    failed = {r.url: r.problems for r in results if r.problems}
    assert not failed, failed
    assert len(results) == len(check_render.pages(site)) >= 15
    assert next(r for r in results if r.url == "concepts/").formulas > 50
    for name in check_render.SCREENSHOTS.values():
        assert (tmp_path / "render" / name).stat().st_size > 10_000


def test_the_check_fails_on_a_page_with_source_or_an_outside_request(
    tmp_path: Path, capsys
) -> None:
    """The documented command, on a site whose pages keep diagram and TeX source and load a script
    from another host: it names each problem and exits 1."""
    if check_render.find_chromium() is None:
        pytest.skip("no chromium on PATH: `apt-get install -y chromium` to run this check")
    page = (
        '<html><head><script src="https://unpkg.com/mermaid.js"></script></head><body><article>'
        "<pre>flowchart LR\n  a --> b</pre><p>the step \\(\\delta\\)</p></article></body></html>"
    )
    for folder in ("", "concepts"):
        (tmp_path / "site" / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / "site" / folder / "index.html").write_text(page)
    assert check_render.main(["--site", str(tmp_path / "site"), "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "0 passed, 2 failed" in out
    assert "diagram source: 'flowchart LR'" in out and "TeX source as text: '\\\\('" in out
    assert "asked the network for https://unpkg.com/mermaid.js" in out
