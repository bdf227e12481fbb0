"""Helpers for tests against the test S3 server (see the s3_endpoint fixture)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import boto3


def s3_admin_client(endpoint: str) -> Any:
    """A plain boto3 client for setting up and inspecting buckets, outside winnow's code."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="winnow-test-key",
        aws_secret_access_key="winnow-test-secret-never-logged",
        region_name="us-east-1",
    )


def new_bucket(endpoint: str) -> str:
    name = f"winnow-{uuid.uuid4().hex[:12]}"
    s3_admin_client(endpoint).create_bucket(Bucket=name)
    return name


def upload_folder(endpoint: str, folder: Path, bucket: str, prefix: str) -> list[str]:
    """Upload every file under `folder` to s3://bucket/prefix/<relative path>. Returns the keys."""
    client = s3_admin_client(endpoint)
    keys = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = path.relative_to(folder).as_posix()
        client.put_object(Bucket=bucket, Key=f"{prefix}/{key}" if prefix else key, Body=path.read_bytes())
        keys.append(key)
    return keys
