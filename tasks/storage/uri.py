"""Storage locations as URIs: a local folder or `s3://bucket/prefix`."""

from __future__ import annotations


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
