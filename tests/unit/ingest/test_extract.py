from __future__ import annotations

from pathlib import Path

import pytest

from ingest.cli import _expand
from ingest.extract import UnsupportedFile, extract


def _pdf_with_text(text: str) -> bytes:
    """A one-page PDF whose content stream shows ``text`` in Helvetica."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


def test_markdown_title_is_its_first_heading(tmp_path: Path) -> None:
    path = tmp_path / "policy.md"
    path.write_text("Intro line\n# Travel policy\nEconomy class.")
    extracted = extract(path)
    assert (extracted.title, extracted.content_type) == ("Travel policy", "text/markdown")


def test_html_drops_scripts_and_keeps_the_title(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>Parking</title><script>var secret=1</script></head>"
        "<body><h1>Parking</h1><p>Level -2 for visitors.</p></body></html>"
    )
    extracted = extract(path)
    assert extracted.title == "Parking"
    assert "Level -2 for visitors." in extracted.text and "secret" not in extracted.text


def test_pdf_text_is_extracted(tmp_path: Path) -> None:
    path = tmp_path / "memo.pdf"
    path.write_bytes(_pdf_with_text("Quarterly budget memo"))
    extracted = extract(path)
    assert "Quarterly budget memo" in extracted.text and extracted.title == "memo"


def test_unsupported_empty_and_broken_files_say_why(tmp_path: Path) -> None:
    (tmp_path / "a.docx").write_bytes(b"PK")
    (tmp_path / "empty.txt").write_text("  ")
    (tmp_path / "broken.pdf").write_bytes(b"not a pdf")
    with pytest.raises(UnsupportedFile, match=r"\.docx"):
        extract(tmp_path / "a.docx")
    with pytest.raises(ValueError, match="no text"):
        extract(tmp_path / "empty.txt")
    with pytest.raises(ValueError):
        extract(tmp_path / "broken.pdf")


def test_folders_expand_to_their_supported_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("b.md", "sub/c.pdf", "sub/skip.docx", "a.txt"):
        (tmp_path / name).write_text("x")
    names = [p.relative_to(tmp_path).as_posix() for p in _expand([tmp_path])]
    assert names == ["a.txt", "b.md", "sub/c.pdf"]
