"""The run report of a real run, opened in headless Chromium, and its PDF and numbers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from playwright.sync_api import Page
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort
from prefect_aws import AwsCredentials

from flows.curate import curate
from tasks.config import ReportConfig
from tasks.records.embeddings import write_embedding_table
from tasks.records.samples import SAMPLE_SCHEMA, SampleTable
from tasks.records.selection import Selection
from tasks.report.build import write_report
from tasks.report.pdf import print_pdf
from tests.browser import open_page
from tests.images import write_bad_files, write_scene_crops
from tests.run_records import synthetic_record
from tests.s3 import new_bucket, s3_admin_client, upload_folder
from tests.test_curate_flow import TINY_TRAINING, run_dir

HEADINGS = [
    "The run",
    "Counts",
    "Selection quality",
    "Embedding map",
    "Metadata: all versus selected",
    "Selected samples",
    "Duplicates beside the sample they duplicate",
    "Most atypical samples",
]
COUNT_LABELS = {
    "discovered": "discovered",
    "new": "new or changed",
    "corrupt": "corrupt",
    "duplicates": "duplicates",
    "missing": "missing (gone while read)",
    "embedded": "embedded",
    "selected": "selected",
}


def artifacts(key: str | None) -> list[Any]:
    """The Prefect artifacts with `key` (every artifact with None), newest first."""
    with get_client(sync_client=True) as client:
        return list(
            client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])) if key else None,
                sort=ArtifactSort.CREATED_DESC,
            )
        )


def run_dir_of(run_json: dict[str, Any]) -> Path:
    return Path(run_json["artifacts"]["run.json"]).parent


@pytest.fixture(scope="module")
def run(prefect_server: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("source")
    good = write_scene_crops(root, per_scene=4)
    write_bad_files(root)
    shutil.copyfile(root / good[0], root / "zz-copy.jpg")
    output = tmp_path_factory.mktemp("output")
    return curate(source=str(root), output=str(output), n_samples=5, training=TINY_TRAINING)


@pytest.fixture(scope="module")
def run_json(run: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads((run_dir(run) / "run.json").read_text()))


@pytest.fixture
def page(run: dict[str, Any], tmp_path: Path) -> Iterator[Page]:
    # One test at a time: Playwright's sync API runs an event loop in this thread while open,
    # and the flows other tests run must not find one there.
    with open_page((run_dir(run) / "report.html").as_uri(), keep=tmp_path / "report.png") as opened:
        yield opened


def non_blank(image: Image.Image) -> bool:
    """More than a flat page: some spread of grey levels."""
    return float(np.asarray(image.convert("L"), dtype=np.float32).std()) > 5.0


def test_the_report_is_published_beside_the_run_and_linked(
    run: dict[str, Any], run_json: dict[str, Any]
) -> None:
    folder = run_dir(run)
    for name in ("report.html", "report.pdf", "report.json"):
        assert (folder / name).stat().st_size > 0
        assert run_json["artifacts"][name] == str(folder / name)
    assert run_json["report"] == {"enabled": True, "pdf": True, "pdf_note": None}
    html = (folder / "report.html").read_text()
    assert "http://" not in html and "https://" not in html  # self-contained: nothing fetched
    # A local output: the UI shows where the files are as text; a file:// link would do nothing.
    [results] = [a for a in artifacts("curate-results") if str(folder) in str(a.data)]
    assert f"- report.html: `{folder / 'report.html'}`" in str(results.data)
    assert f"- selected_filenames.txt: `{folder / 'selected_filenames.txt'}`" in str(results.data)
    [summary] = [a for a in artifacts("curate-summary") if run_json["run_id"] in str(a.data)]
    assert "file://" not in str(summary.data) + str(results.data)
    assert not [a for a in artifacts("curate-report") if str(folder) in str(a.data)]


def test_the_picks_show_as_a_bounded_gallery_of_thumbnails(run_json: dict[str, Any], tmp_path: Path) -> None:
    picked = (run_dir_of(run_json) / "selected_filenames.txt").read_text().splitlines()
    galleries = [a for a in artifacts("curate-gallery") if f"of {len(picked)}" in str(a.data)]
    gallery = str(galleries[0].data)
    assert gallery.count('<img src="data:image/jpeg;base64,') == len(picked)
    for name in picked:
        assert f'alt="{name}"' in gallery
    assert len(gallery) < 600_000
    # It renders: every thumbnail decodes in chromium as the UI's markdown would show it.
    page_file = tmp_path / "gallery.html"
    page_file.write_text(f"<html><body>{gallery}</body></html>")
    with open_page(page_file.as_uri(), keep=tmp_path / "gallery.png") as page:
        widths = page.evaluate("Array.from(document.images).map(i => i.naturalWidth)")
    assert len(widths) == len(picked) and all(w > 0 for w in widths)


def test_the_page_shows_every_section_and_the_counts_of_run_json(
    page: Page, run_json: dict[str, Any]
) -> None:
    headings = page.evaluate("Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
    assert headings == HEADINGS
    rows = page.evaluate(
        "Object.fromEntries(Array.from(document.querySelectorAll('#counts table:first-of-type tr'))"
        ".map(r => [r.cells[0].textContent, r.cells[1].textContent]))"
    )
    for key, label in COUNT_LABELS.items():
        assert rows[label] == f"{run_json['counts'][key]:,}", label
    assert rows["  exact duplicates"] == "1"
    text = page.evaluate("document.body.innerText")
    assert run_json["run_id"] in text
    assert run_json["model"]["execution_provider"] in text
    quality = page.evaluate(
        "Object.fromEntries(Array.from(document.querySelectorAll('#quality table tr')).slice(1)"
        ".map(r => [r.cells[0].textContent, r.cells[2].textContent]))"
    )
    baseline = run_json["selection"]["quality"]["random"]["coverage"]
    assert quality["coverage"] == f"{baseline['mean']:.4g} ± {baseline['std']:.4g}"
    assert "mean ± std of 10 seeds" in page.evaluate("document.querySelector('#quality table').innerText")


def test_every_image_of_the_page_loaded(page: Page, run_json: dict[str, Any], tmp_path: Path) -> None:
    images = page.evaluate(
        "Array.from(document.images).map(i => [i.closest('section').id, i.naturalWidth, i.complete])"
    )
    sections = [section for section, _, _ in images]
    assert sections.count("selected") == run_json["counts"]["selected"]
    assert sections.count("duplicates") == 2  # the copy beside the photograph it copies
    assert {"quality", "map", "metadata", "atypical"} <= set(sections)
    assert all(width > 0 and complete for _, width, complete in images), images
    page.screenshot(path=tmp_path / "report.png", full_page=True)
    with Image.open(tmp_path / "report.png") as shot:
        assert shot.height > 2000  # the whole page, not the window
        assert non_blank(shot)


def test_the_pdf_pages_are_not_blank(run: dict[str, Any], tmp_path: Path) -> None:
    assert shutil.which("pdftoppm"), "poppler-utils is needed: scripts/browser.sh installs it"
    subprocess.run(
        ["pdftoppm", "-r", "30", "-png", str(run_dir(run) / "report.pdf"), str(tmp_path / "page")], check=True
    )
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) >= 2
    for path in pages:
        with Image.open(path) as image:
            assert non_blank(image), path.name


def test_report_json_holds_the_numbers_of_run_json(run: dict[str, Any], run_json: dict[str, Any]) -> None:
    numbers = json.loads((run_dir(run) / "report.json").read_text())
    for section in ("counts", "model", "selection", "telemetry"):
        assert numbers[section] == run_json[section], section
    # The report is written before the commit; run.json, rewritten after it, adds the version.
    committed = {"version", "samples", "selected"}
    assert numbers["datapool"] == {k: v for k, v in run_json["datapool"].items() if k not in committed}
    assert set(run_json["datapool"]) - set(numbers["datapool"]) == committed
    assert numbers["run_id"] == run_json["run_id"]
    # Stages up to the report; publishing and the commit come after it.
    assert numbers["timings"] == {k: v for k, v in run_json["timings"].items() if k in numbers["timings"]}
    assert set(numbers["timings"]) >= {"discover", "inspect", "train", "embed", "select"}
    assert numbers["corrupt_reasons"]
    assert sum(numbers["corrupt_reasons"].values()) == run_json["counts"]["corrupt"]
    # The datapool's counts after the run are what the commit then recorded.
    assert (numbers["datapool"]["samples_after"], numbers["datapool"]["selected_after"]) == (
        run["datapool"]["samples"],
        run["datapool"]["selected"],
    )


def test_without_chromium_there_is_no_pdf_and_the_reason_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = tmp_path / "report.html"
    page.write_text("<html><body>report</body></html>")
    monkeypatch.setenv("PATH", str(tmp_path))
    note = print_pdf(page, tmp_path / "report.pdf")
    assert note is not None and "no Chromium" in note
    assert not (tmp_path / "report.pdf").exists()


def synthetic_video_run(directory: Path) -> tuple[dict[str, Any], SampleTable, Any, Selection]:
    """Frames of two videos, one with an id that is markup, their embeddings and a
    selection of four."""
    frames = [(video, index) for video in ("clips/a.mp4", "clips/<b>.mp4") for index in range(0, 240, 12)]
    ids = [f"{video}#frame={index:06d}" for video, index in frames]
    rng = np.random.default_rng(0)
    columns: dict[str, list[Any]] = {field.name: [None] * len(ids) for field in SAMPLE_SCHEMA}
    columns |= {
        "id": ids,
        "key": [video for video, _ in frames],
        "kind": ["frame"] * len(ids),
        "frame_index": [i for _, i in frames],
        "timestamp_s": [i / 24 for _, i in frames],
        "status": ["ok"] * len(ids),
        "width": [64] * len(ids),
        "height": [48] * len(ids),
        "luminance": rng.random(len(ids)).tolist(),
        "sharpness": (rng.random(len(ids)) * 500).tolist(),
    }
    samples = pa.Table.from_pydict(columns, schema=SAMPLE_SCHEMA)
    pq.write_table(samples, directory / "samples.parquet")
    sample_table = SampleTable(
        path=str(directory / "samples.parquet"),
        processed=len(ids),
        ok=len(ids),
        corrupt=0,
        duplicates=0,
        missing=0,
    )
    vectors = rng.normal(size=(len(ids), 8)).astype(np.float32)
    table = write_embedding_table(
        ids, vectors / np.linalg.norm(vectors, axis=1, keepdims=True), directory / "e.parquet"
    )
    picked = [ids[0], ids[7], ids[25], ids[33]]
    pq.write_table(
        pa.table({"id": picked, "rank": list(range(4)), "reason": ["x"] * 4}), directory / "sel.parquet"
    )
    spread = {"mean": 0.5, "std": 0.1}
    quality = {
        "selected": {
            "diversity": 1.0,
            "mean_distance_to_nearest_pick": 1.0,
            "coverage": 0.5,
            "balance": {"site": 0.9},
        },
        "random": {
            "diversity": spread,
            "mean_distance_to_nearest_pick": spread,
            "coverage": spread,
            "balance": {"site": spread},
        },
        "random_seeds": list(range(10)),
        "random_from": len(ids),
    }
    selection = Selection(
        path=str(directory / "sel.parquet"),
        requested=4,
        selected=4,
        candidates=len(ids),
        note=None,
        quality=quality,
        device="cpu",
    )
    record = synthetic_record("video-run", quality, embedded=len(ids), selected=4)
    return record, sample_table, table, selection


def test_frames_of_videos_get_a_timeline_and_markup_in_ids_is_shown_not_run(tmp_path: Path) -> None:
    record, samples, table, selection = synthetic_video_run(tmp_path)
    files = write_report(record, samples, table, selection, {}, ReportConfig(pdf=False), tmp_path / "report")
    assert files.pdf is None and files.pdf_note is not None
    with open_page(Path(files.html).as_uri()) as page:
        headings = page.evaluate("Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
        assert "Video timelines" in headings
        assert "Duplicates beside the sample they duplicate" not in headings  # there are none
        assert page.evaluate("document.querySelector('#videos img').naturalWidth") > 0
        assert page.evaluate("document.querySelectorAll('b').length") == 0
        assert "clips/<b>.mp4" in page.evaluate("document.getElementById('selected').innerText")


def test_on_s3_the_report_opens_through_a_presigned_link_and_no_artifact_holds_a_secret(
    s3_endpoint: str, aws_credentials: str, tmp_path: Path
) -> None:
    write_scene_crops(tmp_path / "raw", per_scene=2)
    bucket = new_bucket(s3_endpoint)
    upload_folder(s3_endpoint, tmp_path / "raw", bucket, "raw")
    record = curate(
        source=f"s3://{bucket}/raw",
        output=f"s3://{bucket}/curated",
        aws_credentials=aws_credentials,
        n_samples=3,
        cache_dir=str(tmp_path / "cache"),
        training=TINY_TRAINING,
    )
    uri = f"s3://{bucket}/curated/runs/{record['run_id']}/report.html"
    assert record["artifacts"]["report.html"] == uri
    html = (
        s3_admin_client(s3_endpoint)
        .get_object(Bucket=bucket, Key=uri.split("/", 3)[3])["Body"]
        .read()
        .decode()
    )
    assert record["run_id"] in html
    block = AwsCredentials.load(aws_credentials)
    for secret in (block.aws_access_key_id, block.aws_secret_access_key.get_secret_value()):
        assert secret and secret not in html
    # The report opens from the UI through a presigned link whose lifetime is stated.
    [link] = [a for a in artifacts("curate-report") if record["run_id"] in str(a.data)]
    text, url = re.fullmatch(r"\[(.*)\]\((.*)\)", str(link.data)).groups()  # type: ignore[union-attr]
    assert "link works until" in text
    assert url.startswith(s3_endpoint) and "X-Amz-Expires=86400" in url
    with urllib.request.urlopen(url) as answer:
        assert answer.headers["Content-Type"] == "text/html"
        assert record["run_id"] in answer.read().decode()
    [results] = [a for a in artifacts("curate-results") if record["run_id"] in str(a.data)]
    assert "[selected_filenames.txt](" in str(results.data) and "works until" in str(results.data)
    every_artifact = "".join(str(a.data) + str(a.description) for a in artifacts(None))
    assert block.aws_secret_access_key.get_secret_value() not in every_artifact
