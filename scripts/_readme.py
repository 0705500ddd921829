"""Generated sections of Markdown files, between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->``.

Shared by the scripts that rewrite README results (report.py, evaluate_loss.py); not library code.
"""

from __future__ import annotations

import re
from pathlib import Path


def replace_block(path: str | Path, name: str, block: str, after: str | None = None) -> None:
    """Put ``block`` between the markers of ``name``. Missing markers are added after the block
    ``after`` when it is there, else at the end."""
    path = Path(path)
    text = path.read_text()
    start, end = f"<!-- results:{name} -->", f"<!-- /results:{name} -->"
    if start not in text:
        anchor = f"<!-- /results:{after} -->" if after else None
        if anchor and anchor in text:
            text = text.replace(anchor, f"{anchor}\n\n{start}\n{end}", 1)
        else:
            text += f"\n{start}\n{end}\n"
    text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: f"{start}\n{block}{end}", text, flags=re.S)
    path.write_text(text)
