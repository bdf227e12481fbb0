"""Storage locations as URIs: a local folder or `s3://bucket/prefix`."""

from __future__ import annotations

from pathlib import Path


def is_s3_uri(uri: str) -> bool:
    """Whether `uri` is an S3 location (starts with s3://)."""
    return uri.startswith("s3://")


def split_s3_uri(uri: str) -> tuple[str, str]:
    """The bucket and prefix of an S3 URI.

    's3://bucket/a/b/' -> ('bucket', 'a/b')

    Raises:
        ValueError: no bucket is named.
    """
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} names no bucket: write s3://bucket or s3://bucket/prefix")
    return bucket, prefix.strip("/")


def key_prefix_inside(inner: str, outer: str) -> str | None:
    """Where the location `inner` lies inside the location `outer`, as a key prefix.

    '' when they are the same location, None when `inner` is not inside `outer` (another
    bucket, another folder, or one local and one on S3). Local folders are compared
    resolved, so `.` and an absolute path name the same folder.
    """
    if is_s3_uri(inner) != is_s3_uri(outer):
        return None
    if is_s3_uri(inner):
        (inner_bucket, inner_prefix), (outer_bucket, outer_prefix) = split_s3_uri(inner), split_s3_uri(outer)
        if inner_bucket != outer_bucket:
            return None
        if not outer_prefix or inner_prefix == outer_prefix:
            return inner_prefix.removeprefix(outer_prefix)
        return (
            inner_prefix.removeprefix(f"{outer_prefix}/")
            if inner_prefix.startswith(f"{outer_prefix}/")
            else None
        )
    inner_path, outer_path = Path(inner).expanduser().resolve(), Path(outer).expanduser().resolve()
    if not inner_path.is_relative_to(outer_path):
        return None
    relative = inner_path.relative_to(outer_path).as_posix()
    return "" if relative == "." else relative
