"""Which file of the Data Docs directory a URL names (pure).

`make quality` writes Great Expectations' Data Docs, a static site with an
`index.html` at its root, into QUALITY_DOCS_DIR; the portal serves it under
/quality/docs/. Guarantee: only a regular file inside that directory is ever
named: `..`, absolute parts, hidden names and links leading out are refused
(None), and a directory stands for its index.html.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath


def docs_ready(root: Path) -> bool:
    """A quality run has written its site (the directory has its index.html)."""
    return (root / "index.html").is_file()


def resolve(root: Path, rel: str) -> Path | None:
    """The file under `root` that the URL path `rel` (already %-decoded) names, or None."""
    if "\\" in rel or "\x00" in rel:
        return None
    parts = PurePosixPath(rel).parts
    if any(p in ("..", ".") or p.startswith(".") or p == "/" for p in parts):
        return None
    base = root.resolve()
    target = (base / Path(*parts)) if parts else base
    try:
        target = target.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not target.is_relative_to(base):
        return None  # a link that leads out of the site
    if target.is_dir():
        target = target / "index.html"
    return target if target.is_file() else None
