"""Links to a run's results that open from the Prefect UI.

An S3 output's files open through presigned https URLs, whose lifetime is stated beside
them. A local output's files cannot open from a browser that may run on another machine
(a file:// link there does nothing), so they are shown as absolute paths, as text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tasks.storage.s3 import presigned_get_url
from tasks.storage.uri import is_s3_uri

# The files a user opens first, in the order the UI lists them.
SHARED_FILES = ("report.html", "report.pdf", "selected_filenames.txt", "run.json")


@dataclass(frozen=True)
class ResultLink:
    """Where one result file opens: a presigned URL until `expires`, or a location shown as text."""

    name: str
    location: str  # the s3:// URI or the absolute local path
    url: str | None = None
    expires: datetime | None = None


def result_links(artifacts: dict[str, str], aws_credentials: str | None, hours: float) -> list[ResultLink]:
    """A link for each of SHARED_FILES the run wrote; presigned for S3 when `hours` > 0."""
    links = []
    for name in SHARED_FILES:
        if name not in artifacts:
            continue
        location = artifacts[name]
        if not is_s3_uri(location):
            links.append(ResultLink(name, str(Path(location).resolve())))
        elif hours > 0:
            seconds = round(hours * 3600)
            url = presigned_get_url(location, aws_credentials, seconds)
            links.append(ResultLink(name, location, url, datetime.now(UTC) + timedelta(seconds=seconds)))
        else:
            links.append(ResultLink(name, location))
    return links


def links_markdown(links: list[ResultLink], heading: str = "# Results") -> str:
    """The links as markdown under `heading`: each file linked with its expiry, or its location as code."""
    lines = [heading, ""]
    for link in links:
        if link.url is not None and link.expires is not None:
            until = link.expires.strftime("%Y-%m-%d %H:%M UTC")
            lines.append(f"- [{link.name}]({link.url}): presigned link, works until {until}")
        else:
            lines.append(f"- {link.name}: `{link.location}`")
    if any(link.url is None and not is_s3_uri(link.location) for link in links):
        lines += ["", "A local output: open these paths on the machine that ran the flow."]
    return "\n".join(lines)
