r"""Render every page of the built docs in headless Chromium with no network, and fail when a
page still shows a diagram or a formula as source text, or asks for anything off the machine.

It builds the site (``mkdocs build --strict``) into a temporary folder, serves it on 127.0.0.1 at
a free port, and opens each page with ``chromium --headless`` whose network is cut off: every
host name but 127.0.0.1 resolves to nothing and every other request goes to a closed port. For
each page it reads the DOM after the page's scripts ran (``--dump-dom``) and Chromium's network
log (``--log-net-log``).

A page fails when its DOM still holds

- a Mermaid block, or Mermaid source (``flowchart LR``, ``graph TD``, ``subgraph``) as text;
- a formula left for a script (an ``arithmatex`` element), or TeX source outside code blocks:
  ``\(``, ``\[``, ``$$`` or a command such as ``\frac`` or ``\delta``;

or when the page asked for a URL off 127.0.0.1. It also saves screenshots of the home and
concepts pages (1200 x 2000 pixels) into ``--out``.

Install Chromium with ``apt-get install -y chromium`` (Debian's package), then, from the
repository root::

    .venv/bin/python docs/check_render.py --out /tmp/render

It prints one line per page and exits 1 if any page fails. ``tests/test_docs_render.py`` runs it
and is skipped where Chromium is not installed.

Example (the detection alone, on a DOM):
    >>> source_left('<p>Intro</p><pre><code>graph LR\n  a --> b</code></pre>')
    ["diagram source: 'graph LR'"]
    >>> source_left('<p>so \\(\\delta\\) moves</p>')
    ["TeX source as text: '\\\\(', '\\\\)', '\\\\delta' in 'so \\\\(\\\\delta\\\\) moves'"]
    >>> source_left('<p>so <math><mi>δ</mi></math> moves</p><pre><code>print("a\\n")</code></pre>')
    []
"""

from __future__ import annotations

import argparse
import functools
import html.parser
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = {"": "home.png", "concepts/": "concepts.png"}
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
NO_NETWORK = (
    "--proxy-server=127.0.0.1:9",  # a closed port: any request that is not local fails
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)

_DIAGRAM = re.compile(r"^\s*(?:flowchart|graph)\s+(?:LR|RL|TB|TD|BT)\b|^\s*subgraph\s", re.M)
_TEX = re.compile(r"\\[()\[\]]|\$\$|\\[A-Za-z]{2,}")
_SKIPPED = {"code", "pre", "script", "style", "math", "textarea"}


class _Text(html.parser.HTMLParser):
    """Visible text outside code, and inside code, plus the classes seen."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.prose: list[str] = []
        self.all: list[str] = []
        self.classes: set[str] = set()
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.classes.update((dict(attrs).get("class") or "").split())
        if tag not in {"br", "img", "hr", "input", "meta", "link", "wbr", "mspace", "mprescripts"}:
            self._open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._open:
            while self._open and self._open.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if "script" in self._open or "style" in self._open:
            return
        self.all.append(data)
        if not _SKIPPED.intersection(self._open):
            self.prose.append(data)


def source_left(dom: str) -> list[str]:
    """What a rendered DOM still shows as diagram or TeX source (empty when nothing)."""
    text = _Text()
    text.feed(dom)
    problems = []
    if "mermaid" in text.classes:
        problems.append("a Mermaid block (class 'mermaid') that no script drew")
    if "arithmatex" in text.classes:
        problems.append("a formula left for a script (class 'arithmatex')")
    everything = "\n".join(text.all)
    for match in _DIAGRAM.finditer(everything):
        problems.append(f"diagram source: {match.group().strip()!r}")
    prose = "\n".join(text.prose)
    found = sorted({match.group() for match in _TEX.finditer(prose)})
    if found:
        first = _TEX.search(prose).start()
        context = " ".join(prose[max(0, first - 30) : first + 50].split())
        problems.append(f"TeX source as text: {', '.join(map(repr, found))} in {context!r}")
    return problems


def _external_requests(net_log: Path, origin: str) -> set[str]:
    """URLs that the page itself (initiator ``origin``) asked for off 127.0.0.1."""
    if not net_log.is_file():
        return set()
    text = net_log.read_text(errors="replace").rstrip().rstrip(",")
    if not text.endswith("}"):  # a log cut short by a killed browser lacks its closing brackets
        text += "]}"
    urls = set()
    for event in json.loads(text).get("events", []):
        params = event.get("params") or {}
        url = params.get("url", "")
        if params.get("initiator") == origin and not url.startswith(origin):
            urls.add(url)
    return urls


def find_chromium() -> str | None:
    """The first headless-capable browser on PATH, or None."""
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@dataclass
class PageResult:
    url: str
    formulas: int
    problems: list[str] = field(default_factory=list)


def _chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    command += [*NO_NETWORK, f"--user-data-dir={profile}", "--virtual-time-budget=3000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def render_page(browser: str, origin: str, page: str, work: Path) -> PageResult:
    """Open ``origin/page`` with no network and check its DOM and its requests."""
    net_log = work / "net.json"
    net_log.unlink(missing_ok=True)
    out = _chromium(
        browser, work / "profile", f"--log-net-log={net_log}", "--dump-dom", f"{origin}/{page}"
    )
    result = PageResult(page or "/", out.stdout.count("<math"))
    if out.returncode != 0 or "<article" not in out.stdout:
        result.problems.append(f"no page rendered (exit {out.returncode}): {out.stderr[-300:]}")
        return result
    result.problems += source_left(out.stdout)
    result.problems += [
        f"asked the network for {url}" for url in sorted(_external_requests(net_log, origin))
    ]
    return result


@contextmanager
def serve(site: Path) -> Iterator[str]:
    """Serve ``site`` on 127.0.0.1 at a free port; yields the origin ``http://127.0.0.1:PORT``."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(site))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()


def build(site: Path) -> None:
    """``mkdocs build --strict`` into ``site``; raises with mkdocs' output when it fails."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(site)]
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"mkdocs build --strict failed:\n{out.stdout}{out.stderr}")


def pages(site: Path) -> list[str]:
    """Every page of a built site, as paths relative to its root ('' is the home page)."""
    found = sorted(p.parent.relative_to(site).as_posix() for p in site.rglob("index.html"))
    return ["" if p == "." else p + "/" for p in found]


def check(site: Path, out: Path, browser: str) -> list[PageResult]:
    """Render every page of the built ``site``; screenshots of home and concepts into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, serve(site) as origin:
        work = Path(tmp)
        results = [render_page(browser, origin, page, work) for page in pages(site)]
        for page, name in SCREENSHOTS.items():
            shot = out / name
            shot.unlink(missing_ok=True)
            _chromium(
                browser,
                work / "profile",
                f"--screenshot={shot}",
                "--window-size=1200,2000",
                f"{origin}/{page}",
            )
            if not shot.is_file():
                results.append(PageResult(page or "/", 0, [f"no screenshot written to {shot}"]))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/render"), help="screenshot folder")
    parser.add_argument("--site", type=Path, help="check this built site instead of building one")
    parser.add_argument("--chromium", help="the browser to run (default: chromium on PATH)")
    args = parser.parse_args(argv)
    browser = args.chromium or find_chromium()
    if browser is None:
        print("no chromium on PATH: install it with `apt-get install -y chromium`", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        site = args.site
        if site is None:
            site = Path(tmp) / "site"
            build(site)
        results = check(site, args.out, browser)
    for result in results:
        verdict = "ok" if not result.problems else "FAIL"
        print(f"{verdict:4} {result.url:32} {result.formulas:3} formulas")
        for problem in result.problems[:10]:
            print(f"       {problem}")
    failed = [r for r in results if r.problems]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed; screenshots in {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
