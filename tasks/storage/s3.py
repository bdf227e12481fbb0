"""S3 (and any S3-compatible store: MinIO, moto, ...) behind the Storage interface.

Credentials come from a prefect-aws AwsCredentials block, whose client parameters carry
`endpoint_url`; without a block, boto3's default chain. botocore retries throttling
(503 SlowDown), 5xx answers and connection resets with exponential backoff; what is left
when its retries run out becomes a ConnectionError (transient: Prefect retries the task)
or a StorageError (permanent) whose message names the bucket and the cause. Messages are
written here, never copied from a response, so no credential can reach them.
"""

from __future__ import annotations

import mimetypes
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn, cast

import boto3
import botocore.session
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.credentials import CredentialProvider, DeferredRefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from prefect_aws import AwsCredentials

from tasks.storage.interface import (
    MissingObjectError,
    ObjectInfo,
    Storage,
    StorageError,
    UnreadableObjectError,
)
from tasks.storage.uri import split_s3_uri

# boto3's clients are built at run time; without boto3-stubs they are untyped.
S3Client = Any

MIB = 1 << 20

# Above this, uploads are multipart (parallel parts, and a failed part is retried alone).
MULTIPART_THRESHOLD = 16 * MIB

RETRY_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 8},
    connect_timeout=10,
    read_timeout=60,
    # Downloads run concurrently from a thread pool; one connection each.
    max_pool_connections=32,
    # Presigned links are signed with SigV4 (botocore still presigns with SigV2 in some
    # regions otherwise, which newer regions refuse).
    signature_version="s3v4",
)

MISSING_CODES = {"NoSuchKey", "404", "NotFound", "PreconditionFailed", "412"}

DENIED_CODES = {"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "AccountProblem"}
# Written (and overwritten) by each run before any work, to prove the output is writable.
WRITE_CHECK_KEY = ".winnow-write-check"
# An object in an archive storage class (Glacier, Deep Archive) until it is restored.
ARCHIVED_CODES = {"InvalidObjectState", "ObjectNotInActiveTierError"}

REJECTED_CREDENTIALS_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AuthorizationHeaderMalformed",
}


def load_credentials(block_name: str) -> AwsCredentials:
    """The prefect-aws AwsCredentials block `block_name`; a StorageError if there is none."""
    try:
        return cast(AwsCredentials, AwsCredentials.load(block_name))
    except ValueError:
        raise StorageError(
            f"no AwsCredentials block named {block_name!r}: create one (see the README) or leave "
            "aws_credentials empty to use boto3's default credential chain"
        ) from None


class AssumedRoleProvider(CredentialProvider):
    """A role's temporary credentials that botocore renews before they expire.

    prefect-aws assumes a block's `assume_role_arn` once and freezes the answer into the
    session, so a run longer than the role's session (an hour by default) failed at publish
    with ExpiredToken. Here the same AssumeRole call is botocore's refresh function: it runs
    again whenever the credentials come within 15 minutes of their end.
    """

    METHOD = "winnow-assume-role"

    def __init__(self, credentials: AwsCredentials) -> None:
        self.block = credentials

    def assume_role_parameters(self) -> dict[str, Any]:
        """AssumeRole's parameters as prefect-aws builds them from the block."""
        extra = self.block.assume_role_kwargs.get_params_override()
        return {
            "RoleArn": self.block.assume_role_arn,
            "RoleSessionName": f"winnow-{uuid.uuid4().hex[:8]}",
            **extra,
        }

    def load(self) -> DeferredRefreshableCredentials:
        """Credentials fetched on first use and again before each expiry."""
        base = self.block.model_copy(update={"assume_role_arn": None}).get_boto3_session()
        sts = base.client("sts")
        parameters = self.assume_role_parameters()

        def fetch() -> dict[str, str]:
            answer = sts.assume_role(**parameters)["Credentials"]
            return {
                "access_key": answer["AccessKeyId"],
                "secret_key": answer["SecretAccessKey"],
                "token": answer["SessionToken"],
                "expiry_time": answer["Expiration"].isoformat(),
            }

        return DeferredRefreshableCredentials(refresh_using=fetch, method=self.METHOD)


def boto3_session(credentials: AwsCredentials) -> boto3.Session:
    """The block's session; with `assume_role_arn`, one whose role credentials renew themselves."""
    if not credentials.assume_role_arn:
        return credentials.get_boto3_session()
    core = botocore.session.get_session()
    core.get_component("credential_provider").insert_before("env", AssumedRoleProvider(credentials))
    return boto3.Session(botocore_session=core, region_name=credentials.region_name)


@lru_cache(maxsize=8)
def _client(credentials: AwsCredentials | None) -> S3Client:
    # boto3 clients are thread-safe; one per distinct credentials block content.
    if credentials is None:
        return boto3.session.Session().client("s3", config=RETRY_CONFIG)
    params = credentials.aws_client_parameters.get_params_override()
    user_config = params.pop("config", None)
    config = RETRY_CONFIG.merge(user_config) if user_config else RETRY_CONFIG
    return boto3_session(credentials).client("s3", config=config, **params)


def s3_client(block_name: str | None) -> S3Client:
    """An S3 client with the credentials block `block_name`, or boto3's default chain without one."""
    return _client(load_credentials(block_name) if block_name else None)


def raise_for(error: Exception, bucket: str, key: str, action: str) -> NoReturn:
    """Turn a boto error into winnow's: MissingObjectError, StorageError or ConnectionError."""
    where = f"s3://{bucket}/{key}"
    if isinstance(error, NoCredentialsError):
        raise StorageError(
            f"no AWS credentials to {action} {where}: name an AwsCredentials block "
            "(--aws-credentials) or configure boto3's default chain"
        ) from None
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if code == "NoSuchBucket" or (not key and code in {"404", "NotFound"}):
            raise StorageError(f"s3 bucket {bucket!r} does not exist (trying to {action} {where})") from None
        if code in MISSING_CODES:
            raise MissingObjectError(f"{where} is gone or changed since it was listed ({code})") from None
        if code in REJECTED_CREDENTIALS_CODES:
            raise StorageError(
                f"s3 bucket {bucket!r} rejected the credentials ({code}) while trying to {action} {where}"
            ) from None
        # Reading one object: it alone is unreadable, and the run records it and goes on.
        per_object = UnreadableObjectError if key and action in {"read", "download", "copy"} else StorageError
        if code in ARCHIVED_CODES:  # answered with a 403, but not a matter of permissions
            raise per_object(
                f"{where} is in an archive storage class ({code}): restore it to {action} it"
            ) from None
        if code in DENIED_CODES or status == 403:
            raise per_object(f"access denied ({code or status}) to {action} {where}") from None
        if status >= 500 or code in {"SlowDown", "Throttling", "RequestTimeout"}:
            raise ConnectionError(f"s3 kept failing ({code or status}) to {action} {where}") from None
        raise StorageError(f"s3 refused to {action} {where}: {code or status}") from None
    raise ConnectionError(f"could not {action} {where}: {type(error).__name__}") from None


class S3Storage:
    """A bucket and prefix. Keys are relative to the prefix."""

    def __init__(
        self, bucket: str, prefix: str, client: S3Client, multipart_threshold: int = MULTIPART_THRESHOLD
    ) -> None:
        self.bucket, self.prefix, self.client = bucket, prefix, client
        self.uri = f"s3://{bucket}/{prefix}".rstrip("/")
        self.over_network = True
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold, multipart_chunksize=max(multipart_threshold, 5 * MIB)
        )

    @classmethod
    def from_uri(cls, uri: str, aws_credentials: str | None) -> S3Storage:
        """The storage at s3://bucket/prefix, with the credentials block `aws_credentials`."""
        bucket, prefix = split_s3_uri(uri)
        return cls(bucket, prefix, s3_client(aws_credentials))

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _relative(self, full_key: str) -> str:
        return full_key[len(self.prefix) + 1 :] if self.prefix else full_key

    def check_access(self) -> None:
        """Fail early, with a StorageError naming the location, if the bucket cannot be listed."""
        # A one-key listing, not HeadBucket: a HEAD's 403 has no body to tell rejected
        # credentials from denied access, and listing is what a run needs anyway.
        try:
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
        except (ClientError, BotoCoreError) as error:
            raise_for(error, self.bucket, "", "open")

    def check_write_access(self) -> None:
        """check_access, then a write of a small marker object.

        Credentials that may list but not write would otherwise fail the run at publish,
        after all its work.
        """
        self.check_access()
        self.write_bytes(WRITE_CHECK_KEY, b"winnow checks that it may write here before each run\n")

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under the folder `prefix`, but folder placeholders; version: its ETag."""
        # Paginated: a bucket of millions of keys is listed 1,000 at a time.
        full_prefix = "/".join(p for p in (self.prefix, prefix) if p)
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            pages = paginator.paginate(Bucket=self.bucket, Prefix=f"{full_prefix}/" if full_prefix else "")
            for page in pages:
                for item in page.get("Contents", []):
                    key = self._relative(item["Key"])
                    if key and not key.endswith("/"):  # folder placeholders are not objects
                        yield ObjectInfo(key=key, size=int(item["Size"]), version=item["ETag"].strip('"'))
        except (ClientError, BotoCoreError) as error:
            raise_for(error, self.bucket, full_prefix, "list")

    def _get(self, key: str, **conditions: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._full(key), **conditions)
            return bytes(response["Body"].read())
        except (ClientError, BotoCoreError) as error:
            raise_for(error, self.bucket, self._full(key), "read")

    def read_bytes(self, key: str) -> bytes:
        """The object's content. Raises MissingObjectError when there is none."""
        return self._get(key)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """`length` bytes of the object from byte `start` (a ranged GET)."""
        return self._get(key, Range=f"bytes={start}-{start + length - 1}")

    def read_object(self, info: ObjectInfo) -> bytes:
        """The content of exactly the listed version (its ETag and size); else MissingObjectError."""
        # If-Match: the listed version or nothing; a changed object is 'missing' this run.
        data = self._get(info.key, IfMatch=f'"{info.version}"')
        if len(data) != info.size:
            raise MissingObjectError(
                f"{self.uri}/{info.key}: listed {info.size} bytes but {len(data)} arrived"
            )
        return data

    def write_bytes(self, key: str, data: bytes) -> str:
        """Write (replace) the object; returns its URI."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data)
        except (ClientError, BotoCoreError) as error:
            raise_for(error, self.bucket, self._full(key), "write")
        return f"s3://{self.bucket}/{self._full(key)}"

    def write_new(self, key: str, data: bytes) -> bool:
        """Create the object only if none exists at `key` (a conditional PUT); False if one did."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data, IfNoneMatch="*")
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"PreconditionFailed", "412"}:
                return False
            raise_for(error, self.bucket, self._full(key), "create")
        except BotoCoreError as error:
            raise_for(error, self.bucket, self._full(key), "create")
        return True

    def delete(self, key: str) -> None:
        """Remove the object `key` (S3 answers a missing key with success too)."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._full(key))
        except (ClientError, BotoCoreError) as error:
            raise_for(error, self.bucket, self._full(key), "delete")

    def upload_file(self, key: str, path: Path) -> str:
        """Upload the local file `path` to `key` (multipart above the threshold); returns its URI."""
        try:
            self.client.upload_file(str(path), self.bucket, self._full(key), Config=self.transfer)
        except (ClientError, BotoCoreError) as error:
            raise_for(error, self.bucket, self._full(key), "upload")
        except boto3.exceptions.S3UploadFailedError as error:
            # boto3 wraps the ClientError (as the exception's context) in its own type.
            if isinstance(error.__context__, ClientError):
                raise_for(error.__context__, self.bucket, self._full(key), "upload")
            raise ConnectionError(f"upload of {path} to {self.uri}/{key} failed") from None
        return f"s3://{self.bucket}/{self._full(key)}"

    def download_file(self, key: str, path: Path) -> None:
        """Download the object `key` into the local file `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.download_file(self.bucket, self._full(key), str(path), Config=self.transfer)
        except (ClientError, BotoCoreError) as error:
            # The download starts with a HEAD, whose 404 cannot say whether the bucket or
            # the object is missing: ask the bucket.
            self.check_access()
            raise_for(error, self.bucket, self._full(key), "download")

    @contextmanager
    def local_file(self, info: ObjectInfo, scratch: Path) -> Iterator[Path]:
        """The listed version of the object downloaded into `scratch`, removed afterwards."""
        path = scratch / f"{uuid.uuid4().hex}{PurePosixPath(info.key).suffix}"
        try:
            self.download_file(info.key, path)
            if path.stat().st_size != info.size:
                raise MissingObjectError(
                    f"{self.uri}/{info.key}: listed {info.size} bytes but {path.stat().st_size} arrived"
                )
            yield path
        finally:
            path.unlink(missing_ok=True)

    def copy_from(self, source: Storage, key: str, target_key: str) -> str:
        """Copy `key` of `source` to `target_key`, server-side on the same endpoint; returns its URI."""
        if isinstance(source, S3Storage) and source.client.meta.endpoint_url == self.client.meta.endpoint_url:
            # Server-side: the bytes never leave the store.
            try:
                self.client.copy(
                    {"Bucket": source.bucket, "Key": source._full(key)},
                    self.bucket,
                    self._full(target_key),
                    Config=self.transfer,
                )
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") in MISSING_CODES | ARCHIVED_CODES:
                    raise_for(error, source.bucket, source._full(key), "copy")
                raise_for(error, self.bucket, self._full(target_key), "copy to")
            except BotoCoreError as error:
                raise_for(error, self.bucket, self._full(target_key), "copy to")
            return f"s3://{self.bucket}/{self._full(target_key)}"
        return self.write_bytes(target_key, source.read_bytes(key))


def presigned_get_url(uri: str, aws_credentials: str | None, seconds: int) -> str:
    """An https URL that reads the object at `uri` for `seconds`, without credentials.

    Signed locally (no request is made). The browser is told the object's type from its
    name, so report.html opens as a page rather than downloading.
    """
    bucket, key = split_s3_uri(uri)
    parameters = {"Bucket": bucket, "Key": key}
    content_type = mimetypes.guess_type(key)[0]
    if content_type is not None:
        parameters["ResponseContentType"] = content_type
    try:
        return str(
            s3_client(aws_credentials).generate_presigned_url(
                "get_object", Params=parameters, ExpiresIn=seconds
            )
        )
    except (BotoCoreError, ClientError) as error:
        raise_for(error, bucket, key, "sign a link to")
