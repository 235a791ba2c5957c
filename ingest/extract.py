"""Text out of the file types ``headwater publish`` takes: .txt, .md, .html, .pdf."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SUPPORTED = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
}


class UnsupportedFile(ValueError):
    """The file's type is not one we can extract text from."""


@dataclass(frozen=True)
class Extracted:
    title: str
    text: str
    content_type: str


def extract(path: Path) -> Extracted:
    """Title and plain text of ``path``; raises ``UnsupportedFile`` or ``ValueError``."""
    content_type = SUPPORTED.get(path.suffix.lower())
    if content_type is None:
        raise UnsupportedFile(f"unsupported file type {path.suffix or '(none)'}")
    if content_type == "application/pdf":
        title, text = _pdf(path)
    elif content_type == "text/html":
        title, text = _html(path.read_text(encoding="utf-8", errors="replace"))
    else:
        text = path.read_text(encoding="utf-8")
        title = next(
            (line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")), ""
        )
    if not text.strip():
        raise ValueError("no text could be extracted")
    return Extracted(title or path.stem, text, content_type)


def _html(markup: str) -> tuple[str, str]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(markup, "html.parser")
    for hidden in soup(["script", "style", "noscript", "template"]):
        hidden.decompose()
    title = soup.title.get_text(strip=True) if soup.title else ""
    body = soup.body or soup
    lines = (line.strip() for line in body.get_text("\n").splitlines())
    return title, "\n".join(line for line in lines if line)


def _pdf(path: Path) -> tuple[str, str]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        pages = [page.extract_text() or "" for page in reader.pages]
    except PdfReadError as exc:
        raise ValueError(f"not a readable PDF: {exc}") from exc
    title = str(reader.metadata.title) if reader.metadata and reader.metadata.title else ""
    return title, "\n\n".join(pages)
