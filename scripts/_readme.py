"""Generated sections of Markdown files, between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->``.

Shared by the scripts that rewrite README results (report.py, evaluate_loss.py); not library code.
"""

from __future__ import annotations

import re
from pathlib import Path


def replace_block(path: str | Path, name: str, block: str) -> None:
    """Put ``block`` between the markers of ``name`` (appended at the end when they are missing)."""
    path = Path(path)
    text = path.read_text()
    start, end = f"<!-- results:{name} -->", f"<!-- /results:{name} -->"
    if start not in text:
        text += f"\n{start}\n{end}\n"
    text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: f"{start}\n{block}{end}", text, flags=re.S)
    path.write_text(text)
