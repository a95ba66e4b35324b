r"""MkDocs hook: the pages' formulas become MathML when the site is built.

``pymdownx.arithmatex`` (``generic: true``) wraps each ``$...$`` in
``<span class="arithmatex">\(...\)</span>`` and each ``$$...$$`` block in
``<div class="arithmatex">\[...\]</div>``; this hook replaces both with the MathML that
``latex2mathml`` writes. Browsers draw MathML natively, so the site needs no script and no network
to show a formula. A formula that ``latex2mathml`` cannot convert fails the build, naming the page.

Example (what the hook does to one formula):
    >>> on_page_content('<span class="arithmatex">\\(\\delta\\)</span>', page=None)[:30]
    '<math xmlns="http://www.w3.org'
"""

from __future__ import annotations

import html
import re

try:
    from latex2mathml.converter import convert
except ImportError as error:
    raise ImportError(
        "the docs' formulas need latex2mathml: pip install -e '.[docs]' or pip install latex2mathml"
    ) from error

_FORMULA = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.S)
_DELIMITERS = {"span": (r"\(", r"\)", "inline"), "div": (r"\[", r"\]", "block")}


def _mathml(match: re.Match[str], where: str) -> str:
    tag, body = match.group(1), html.unescape(match.group(2)).strip()
    start, end, display = _DELIMITERS[tag]
    if not (body.startswith(start) and body.endswith(end)):
        raise ValueError(f"{where}: formula {body!r} is not wrapped in {start} ... {end}")
    tex = body[len(start) : -len(end)].strip()
    try:
        mathml = convert(tex, display=display)
    except Exception as error:
        raise ValueError(f"{where}: latex2mathml cannot convert ${tex}$: {error}") from error
    # latex2mathml keeps a command it does not know as text (``\arg`` -> <mi>\arg</mi>): a page
    # would then show TeX source. Refuse it, so that the formula is rewritten with known commands.
    left = re.findall(r"\\[A-Za-z]+", re.sub(r"<[^>]+>", " ", mathml))
    if left:
        raise ValueError(
            f"{where}: latex2mathml does not know {sorted(set(left))} in ${tex}$; "
            r"write it with commands it converts (e.g. \mathrm{arg\,max} for \arg\max)"
        )
    return mathml


def on_page_content(content: str, page, **_: object) -> str:
    """Replace every arithmatex formula of a rendered page by its MathML."""
    where = getattr(getattr(page, "file", None), "src_uri", "page")
    return _FORMULA.sub(lambda match: _mathml(match, where), content)
