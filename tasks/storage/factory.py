"""The storage a source or output URI names."""

from __future__ import annotations

from pathlib import Path

from tasks.storage.interface import Storage
from tasks.storage.local import LocalStorage
from tasks.storage.uri import is_s3_uri


def open_storage(uri: str, aws_credentials: str | None = None) -> Storage:
    """The storage a source or output URI names: a local folder or `s3://bucket/prefix`.

    `aws_credentials` names a prefect-aws AwsCredentials block; without one, boto3's
    default chain is used.

    Raises:
        ValueError: the URI has a scheme other than s3://.
    """
    if is_s3_uri(uri):
        from tasks.storage.s3 import S3Storage

        return S3Storage.from_uri(uri, aws_credentials)
    if "://" in uri:
        raise ValueError(f"{uri!r}: a source or output is a local folder or s3://bucket/prefix")
    return LocalStorage(Path(uri).expanduser())
