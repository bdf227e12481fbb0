"""The run report's files."""

from __future__ import annotations

from pydantic import BaseModel


class ReportFiles(BaseModel, frozen=True):
    """Where the run report's HTML, JSON and PDF (if any) were written."""

    html: str
    json_path: str
    pdf: str | None
    # Why there is no PDF (asked for none, or it could not be printed); None when written.
    pdf_note: str | None
