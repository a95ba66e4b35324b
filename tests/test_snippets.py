"""The README's and the docs home page's "Ten lines" run as written, end to end."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = {"README": ROOT / "README.md", "docs home": ROOT / "docs" / "index.md"}


def ten_lines(page: Path) -> str:
    """The first Python block under the page's "Ten lines" heading."""
    text = page.read_text()
    section = text[text.index("## Ten lines") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_both_pages_show_the_same_block() -> None:
    assert ten_lines(PAGES["README"]) == ten_lines(PAGES["docs home"])


@pytest.mark.slow
def test_ten_lines_run_as_written(tmp_path) -> None:
    """digits -> train -> diagnostics -> evaluate -> save -> load, in a fresh process.

    Before: the docs' block used undefined ``loader`` and ``epochs`` and neither page showed
    evaluation or saving and loading a model."""
    code = ten_lines(PAGES["README"]) + "\nprint('loaded', type(trained).__name__)\n"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "All" in out.stdout and "loaded DigitsCNN" in out.stdout
    assert (tmp_path / "digits.pt").is_file()
