"""The page itself: one self-contained HTML file (static/index.html with its CSS, JS and data inlined)."""

from __future__ import annotations

import json
from pathlib import Path

PAGE_DIR = Path(__file__).with_name("static")


def render_page(boot: dict) -> str:
    """The page with its CSS and JS inlined and `boot` (JSON) embedded: one self-contained file."""
    html = (PAGE_DIR / "index.html").read_text(encoding="utf-8")
    css = (PAGE_DIR / "review.css").read_text(encoding="utf-8")
    js = (PAGE_DIR / "review.js").read_text(encoding="utf-8")
    data = json.dumps(boot, ensure_ascii=False).replace("<", "\\u003c").replace("\u2028", "\\u2028") \
        .replace("\u2029", "\\u2029")
    return (html.replace("/*__CSS__*/", css)
                .replace("/*__BOOT__*/", f"window.REVIEW_BOOT = {data};")
                .replace("/*__JS__*/", js.replace("</script", "<\\/script")))
