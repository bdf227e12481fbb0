"""S3Storage against real S3-compatible servers (moto's server mode) over real HTTP.

No mocks: the store is the session's moto server (s3_endpoint), a second moto process with
IAM authentication on, or the session's server behind tests/s3_faults.FaultProxy, which
answers chosen requests with 503 SlowDown or a connection reset.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import traceback
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
import pytest
from botocore.exceptions import ClientError
from PIL import Image
from prefect_aws import AwsCredentials

from flows.curate import curate
from tasks.config import ChecksConfig
from tasks.media.inspection import inspect_images
from tasks.publish.files import copy_selected_images
from tasks.storage.factory import open_storage
from tasks.storage.interface import MissingObjectError, StorageError, contained_key
from tasks.storage.s3 import MIB, S3Storage, boto3_session, s3_client
from tasks.storage.uri import split_s3_uri
from tests.images import jpeg_bytes, write_scene_crops
from tests.s3 import new_bucket, s3_admin_client
from tests.s3_faults import Fault, FaultProxy, MotoProcess

JPEG = jpeg_bytes(Image.new("RGB", (40, 30), (200, 120, 40)))


def save_credentials(
    name: str, endpoint: str, key_id: str, secret: str, config: dict[str, Any] | None = None
) -> str:
    from prefect_aws import AwsClientParameters, AwsCredentials

    AwsCredentials(
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        aws_client_parameters=AwsClientParameters(endpoint_url=endpoint, config=config),
    ).save(name, overwrite=True)
    return name


def put(endpoint: str, bucket: str, objects: dict[str, bytes]) -> None:
    client = s3_admin_client(endpoint)
    for key, data in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=data)


def etag(endpoint: str, bucket: str, key: str) -> str:
    return str(s3_admin_client(endpoint).head_object(Bucket=bucket, Key=key)["ETag"]).strip('"')


def chain_text(error: BaseException) -> str:
    """Everything an exception could show: its message, repr and traceback, and those of every
    exception chained to it, suppressed context included."""
    texts: list[str] = []
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current), "".join(traceback.format_exception(current))]
        pending += [current.__cause__, current.__context__]
    return "\n".join(texts)


# --- the session's S3 server, through the AwsCredentials block -------------------------------


def test_listing_through_the_credentials_block_gives_keys_under_the_prefix_with_sizes_and_etags(
    s3_endpoint: str, aws_credentials: str
) -> None:
    bucket = new_bucket(s3_endpoint)
    inside = {"raw/a.jpg": b"a" * 10, "raw/cam1/b.png": b"b" * 2000, "raw/cam1/deep/c.jpg": b""}
    outside = {"rawer/d.jpg": b"d", "other/e.jpg": b"e", "f.jpg": b"f", "raw/folder/": b""}
    put(s3_endpoint, bucket, inside | outside)

    storage = open_storage(f"s3://{bucket}/raw", aws_credentials)
    storage.check_access()
    listed = {info.key: info for info in storage.list_objects()}

    assert sorted(listed) == ["a.jpg", "cam1/b.png", "cam1/deep/c.jpg"]
    for full_key, data in inside.items():
        info = listed[full_key.removeprefix("raw/")]
        assert info.size == len(data)
        assert info.version == etag(s3_endpoint, bucket, full_key) == hashlib.md5(data).hexdigest()
        assert storage.read_object(info) == data
    assert [i.key for i in storage.list_objects("cam1")] == ["cam1/b.png", "cam1/deep/c.jpg"]
    assert storage.uri == f"s3://{bucket}/raw"

    whole_bucket = open_storage(f"s3://{bucket}/", aws_credentials)
    assert sorted(i.key for i in whole_bucket.list_objects()) == sorted(
        k for k in inside | outside if not k.endswith("/")
    )


def test_s3_uris_split_into_bucket_and_prefix() -> None:
    assert split_s3_uri("s3://bucket/a/b/") == ("bucket", "a/b")
    assert split_s3_uri("s3://bucket") == ("bucket", "")
    with pytest.raises(ValueError, match="names no bucket"):
        split_s3_uri("s3:///prefix")


def put_many(endpoint: str, bucket: str, keys: list[str], threads: int = 4) -> None:
    """PUT each key (its name as content) with bare http.client requests, a connection a
    thread: about half the time of boto3's put_object against the in-process test server,
    which is bound by Python time on both sides (moto does not check signatures here)."""
    host, port = urlsplit(endpoint).hostname, urlsplit(endpoint).port

    def put_all(share: list[str]) -> None:
        connection = http.client.HTTPConnection(str(host), port, timeout=30)
        try:
            for key in share:
                connection.request("PUT", f"/{bucket}/{quote(key)}", body=key.encode())
                response = connection.getresponse()
                assert response.status == 200, (key, response.status, response.read())
                response.read()
        finally:
            connection.close()

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put_all, [keys[i::threads] for i in range(threads)]))


def test_listing_pages_through_more_than_a_thousand_objects_each_once(
    s3_endpoint: str, s3_proxy: FaultProxy, proxied_credentials: str
) -> None:
    bucket = new_bucket(s3_endpoint)
    keys = [f"many/{i // 100:02d}/{i:05d}.bin" for i in range(1205)]
    put_many(s3_endpoint, bucket, keys)
    put(s3_endpoint, bucket, {"many.txt": b"beside the prefix", "manyx/1.bin": b"beside too"})

    listed = list(open_storage(f"s3://{bucket}/many", proxied_credentials).list_objects())

    assert len(listed) == 1205
    assert sorted(info.key for info in listed) == sorted(k.removeprefix("many/") for k in keys)
    assert {info.size for info in listed} == {len(keys[0])}
    # It really took more than one page (S3 gives at most 1,000 keys a page).
    assert len(s3_proxy.seen(f"/{bucket}")) == 2


WEIRD_KEYS = [
    "sp ace/ünïcødé.jpg",
    "a/../b.jpg",
    "b.jpg",
    "./x.jpg",
    "x.jpg",
    "../up.jpg",
    "a//c.jpg",
    "a/./c.jpg",
    "a/c.jpg",
    "100%/d.jpg",
    "%2E%2E/up.jpg",
    "back\\slash.jpg",
]


def test_keys_with_spaces_unicode_and_dot_segments_round_trip_and_stay_inside_a_local_folder(
    s3_endpoint: str, aws_credentials: str, tmp_path: Path
) -> None:
    bucket = new_bucket(s3_endpoint)
    contents = {key: f"content of {key!r}".encode() for key in WEIRD_KEYS}
    put(s3_endpoint, bucket, {f"raw/{key}": data for key, data in contents.items()})

    storage = open_storage(f"s3://{bucket}/raw", aws_credentials)
    listed = list(storage.list_objects())

    assert sorted(info.key for info in listed) == sorted(WEIRD_KEYS)
    for info in listed:
        assert storage.read_object(info) == contents[info.key]

    root = (tmp_path / "local").resolve()
    paths = {key: (root / contained_key(key)).resolve() for key in WEIRD_KEYS}
    for key, path in paths.items():
        assert path.is_relative_to(root), f"{key!r} escapes to {path}"
    assert len(set(paths.values())) == len(WEIRD_KEYS)
    # Usable as file names: every object can be saved there without one replacing another.
    for key, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(contents[key])
    assert sorted(p.read_bytes() for p in root.rglob("*") if p.is_file()) == sorted(contents.values())


def test_reading_a_listed_object_that_was_deleted_or_overwritten_is_a_missing_object(
    s3_endpoint: str, aws_credentials: str
) -> None:
    bucket = new_bucket(s3_endpoint)
    put(
        s3_endpoint, bucket, {"raw/kept.jpg": b"kept", "raw/deleted.jpg": b"gone", "raw/changed.jpg": b"old!"}
    )
    storage = open_storage(f"s3://{bucket}/raw", aws_credentials)
    listed = {info.key: info for info in storage.list_objects()}

    admin = s3_admin_client(s3_endpoint)
    admin.delete_object(Bucket=bucket, Key="raw/deleted.jpg")
    admin.put_object(Bucket=bucket, Key="raw/changed.jpg", Body=b"new!")  # same size, new content

    assert storage.read_object(listed["kept.jpg"]) == b"kept"
    with pytest.raises(MissingObjectError, match=f"s3://{bucket}/raw/deleted.jpg"):
        storage.read_object(listed["deleted.jpg"])
    with pytest.raises(MissingObjectError, match=f"s3://{bucket}/raw/changed.jpg"):
        storage.read_object(listed["changed.jpg"])
    with pytest.raises(MissingObjectError):
        storage.read_bytes("deleted.jpg")
    assert storage.read_bytes("changed.jpg") == b"new!"


def test_write_new_creates_an_object_only_once(s3_endpoint: str, aws_credentials: str) -> None:
    bucket = new_bucket(s3_endpoint)
    storage = open_storage(f"s3://{bucket}/out", aws_credentials)

    assert storage.write_new("claims/shard-0.json", b"first") is True
    assert storage.write_new("claims/shard-0.json", b"second") is False

    stored = s3_admin_client(s3_endpoint).get_object(Bucket=bucket, Key="out/claims/shard-0.json")
    assert stored["Body"].read() == b"first"
    assert storage.write_bytes("claims/shard-0.json", b"replaced") == f"s3://{bucket}/out/claims/shard-0.json"
    assert storage.read_bytes("claims/shard-0.json") == b"replaced"


def test_files_above_the_threshold_upload_in_parts_and_download_intact(
    s3_endpoint: str, aws_credentials: str, tmp_path: Path
) -> None:
    bucket = new_bucket(s3_endpoint)
    storage = S3Storage(bucket, "models", s3_client(aws_credentials), multipart_threshold=5 * MIB)
    big, small = tmp_path / "big.onnx", tmp_path / "small.onnx"
    big.write_bytes(os.urandom(12 * MIB))
    small.write_bytes(os.urandom(4 * MIB))

    assert storage.upload_file("big.onnx", big) == f"s3://{bucket}/models/big.onnx"
    assert storage.upload_file("small.onnx", small) == f"s3://{bucket}/models/small.onnx"
    # Below winnow's default threshold (16 MiB), the same 12 MiB go up in one piece.
    S3Storage(bucket, "models", s3_client(aws_credentials)).upload_file("big-whole.onnx", big)

    # A multipart upload's ETag is '<md5 of the parts' md5s>-<parts>': 12 MiB in 5 MiB parts.
    assert etag(s3_endpoint, bucket, "models/big.onnx").endswith("-3")
    assert etag(s3_endpoint, bucket, "models/small.onnx") == hashlib.md5(small.read_bytes()).hexdigest()
    assert etag(s3_endpoint, bucket, "models/big-whole.onnx") == hashlib.md5(big.read_bytes()).hexdigest()
    storage.download_file("big.onnx", tmp_path / "back" / "big.onnx")
    storage.download_file("small.onnx", tmp_path / "back" / "small.onnx")
    assert (tmp_path / "back" / "big.onnx").read_bytes() == big.read_bytes()
    assert (tmp_path / "back" / "small.onnx").read_bytes() == small.read_bytes()
    with pytest.raises(MissingObjectError):
        storage.download_file("nothing.onnx", tmp_path / "back" / "nothing.onnx")


def test_copies_between_buckets_on_one_endpoint_happen_on_the_server(
    s3_endpoint: str, s3_proxy: FaultProxy, proxied_credentials: str, aws_credentials: str
) -> None:
    source_bucket, target_bucket = new_bucket(s3_endpoint), new_bucket(s3_endpoint)
    data = os.urandom(300_000)
    put(s3_endpoint, source_bucket, {"raw/cam/a.jpg": data})
    source = open_storage(f"s3://{source_bucket}/raw", proxied_credentials)
    target = open_storage(f"s3://{target_bucket}/subset", proxied_credentials)

    uri = target.copy_from(source, "cam/a.jpg", "images/a.jpg")

    assert uri == f"s3://{target_bucket}/subset/images/a.jpg"
    assert target.read_bytes("images/a.jpg") == data
    # Through the proxy, what the client sent can be seen: a CopyObject, and no download.
    assert [s.method for s in s3_proxy.seen(f"/{source_bucket}/raw/cam/a.jpg")] in (["HEAD"], [])
    copies = s3_proxy.seen(f"/{target_bucket}/subset/images/a.jpg")
    assert [s.headers.get("x-amz-copy-source", "").lstrip("/") for s in copies if s.method == "PUT"] == [
        f"{source_bucket}/raw/cam/a.jpg"
    ]

    # Between endpoints (the proxy's and the server's own) the bytes pass through the client.
    direct_target = open_storage(f"s3://{target_bucket}/direct", aws_credentials)
    assert direct_target.copy_from(source, "cam/a.jpg", "a.jpg") == f"s3://{target_bucket}/direct/a.jpg"
    assert direct_target.read_bytes("a.jpg") == data


def test_a_missing_bucket_is_a_storage_error_naming_it(s3_endpoint: str, aws_credentials: str) -> None:
    bucket = f"winnow-missing-{uuid.uuid4().hex[:12]}"
    storage = open_storage(f"s3://{bucket}/raw", aws_credentials)

    with pytest.raises(StorageError, match=f"'{bucket}' does not exist"):
        storage.check_access()
    with pytest.raises(StorageError, match=f"'{bucket}' does not exist"):
        list(storage.list_objects())
    with pytest.raises(StorageError, match=f"'{bucket}' does not exist"):
        storage.read_bytes("a.jpg")


def test_uploading_to_a_missing_bucket_is_a_storage_error_naming_it(
    s3_endpoint: str, aws_credentials: str, tmp_path: Path
) -> None:
    bucket = f"winnow-missing-{uuid.uuid4().hex[:12]}"
    (tmp_path / "model.onnx").write_bytes(b"weights")
    with pytest.raises(StorageError, match=f"'{bucket}' does not exist"):
        open_storage(f"s3://{bucket}/out", aws_credentials).upload_file("model.onnx", tmp_path / "model.onnx")


def test_downloading_from_a_missing_bucket_says_the_bucket_is_missing(
    s3_endpoint: str, aws_credentials: str, tmp_path: Path
) -> None:
    bucket = f"winnow-missing-{uuid.uuid4().hex[:12]}"
    with pytest.raises(StorageError, match=f"'{bucket}' does not exist"):
        open_storage(f"s3://{bucket}/out", aws_credentials).download_file("model.onnx", tmp_path / "m.onnx")


def test_copying_a_missing_object_names_the_missing_source(s3_endpoint: str, aws_credentials: str) -> None:
    source_bucket, target_bucket = new_bucket(s3_endpoint), new_bucket(s3_endpoint)
    source = open_storage(f"s3://{source_bucket}/raw", aws_credentials)
    target = open_storage(f"s3://{target_bucket}/subset", aws_credentials)
    with pytest.raises(MissingObjectError, match=f"s3://{source_bucket}/raw/gone.jpg"):
        target.copy_from(source, "gone.jpg", "images/gone.jpg")


# --- a second moto server, with IAM authentication enforced ----------------------------------


@dataclass(frozen=True)
class LockedS3:
    url: str
    bucket: str
    reader: tuple[str, str]  # an IAM user allowed s3:*: (access key id, secret)
    powerless: tuple[str, str]  # an IAM user with no policy at all
    lister: tuple[str, str]  # an IAM user that may list and read, not write


# Requests moto serves before it starts to check credentials: exactly the setup below.
SETUP_REQUESTS = 10


@pytest.fixture(scope="module")
def locked_s3() -> Iterator[LockedS3]:
    server = MotoProcess({"INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_REQUESTS)})
    try:
        setup = {
            "endpoint_url": server.url,
            "region_name": "us-east-1",
            "aws_access_key_id": "setup",
            "aws_secret_access_key": "setup",
        }
        s3, iam = boto3.client("s3", **setup), boto3.client("iam", **setup)
        bucket = "winnow-locked"
        s3.create_bucket(Bucket=bucket)  # 1
        s3.put_object(Bucket=bucket, Key="raw/a.jpg", Body=b"locked away")  # 2
        iam.create_user(UserName="reader")  # 3
        allow_s3 = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="reader", PolicyName="s3", PolicyDocument=json.dumps(allow_s3))  # 4
        reader = iam.create_access_key(UserName="reader")["AccessKey"]  # 5
        iam.create_user(UserName="powerless")  # 6
        powerless = iam.create_access_key(UserName="powerless")["AccessKey"]  # 7
        iam.create_user(UserName="lister")  # 8
        read_only = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["s3:List*", "s3:Get*"], "Resource": "*"}],
        }
        iam.put_user_policy(UserName="lister", PolicyName="s3", PolicyDocument=json.dumps(read_only))  # 9
        lister = iam.create_access_key(UserName="lister")["AccessKey"]  # 10
        # From here on, credentials count: the setup's own made-up ones no longer work.
        with pytest.raises(ClientError, match="InvalidAccessKeyId"):
            s3.get_object(Bucket=bucket, Key="raw/a.jpg")
        yield LockedS3(
            url=server.url,
            bucket=bucket,
            reader=(reader["AccessKeyId"], reader["SecretAccessKey"]),
            powerless=(powerless["AccessKeyId"], powerless["SecretAccessKey"]),
            lister=(lister["AccessKeyId"], lister["SecretAccessKey"]),
        )
    finally:
        server.stop()


def test_credentials_allowed_by_iam_can_read(locked_s3: LockedS3, prefect_server: None) -> None:
    block = save_credentials("winnow-test-locked-reader", locked_s3.url, *locked_s3.reader)
    storage = open_storage(f"s3://{locked_s3.bucket}/raw", block)

    storage.check_access()
    assert [info.key for info in storage.list_objects()] == ["a.jpg"]
    assert storage.read_bytes("a.jpg") == b"locked away"


MADE_UP_SECRET = "made-up-secret/Zx81+never-to-be-shown"
WRONG_SECRET = "wrong-secret/Qq42+never-to-be-shown"


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("made-up access key", "rejected the credentials (InvalidAccessKeyId)"),
        ("wrong secret", "rejected the credentials (SignatureDoesNotMatch)"),
        ("user without a policy", "access denied (AccessDenied)"),
    ],
)
def test_refused_credentials_are_a_storage_error_naming_the_bucket_and_never_the_secret(
    locked_s3: LockedS3, prefect_server: None, case: str, words: str
) -> None:
    key_id, secret = {
        "made-up access key": ("AKIAMADEUP0123456789", MADE_UP_SECRET),
        "wrong secret": (locked_s3.reader[0], WRONG_SECRET),
        "user without a policy": locked_s3.powerless,
    }[case]
    block = save_credentials(f"winnow-test-locked-{case.replace(' ', '-')}", locked_s3.url, key_id, secret)
    storage = open_storage(f"s3://{locked_s3.bucket}/raw", block)

    errors: list[StorageError] = []
    for attempt in (
        storage.check_access,
        lambda: list(storage.list_objects()),
        lambda: storage.read_bytes("a.jpg"),
    ):
        with pytest.raises(StorageError) as caught:
            attempt()
        errors.append(caught.value)

    for error in errors:
        assert locked_s3.bucket in str(error)
        assert secret not in chain_text(error)
    for error in errors:
        assert words in str(error)


def test_check_access_tells_rejected_credentials_from_denied_access(
    locked_s3: LockedS3, prefect_server: None
) -> None:
    block = save_credentials(
        "winnow-test-locked-made-up", locked_s3.url, "AKIAMADEUP0123456789", MADE_UP_SECRET
    )
    with pytest.raises(StorageError, match="rejected the credentials"):
        open_storage(f"s3://{locked_s3.bucket}/raw", block).check_access()


# --- the session's S3 server behind a proxy that throttles and resets ------------------------


@pytest.fixture(scope="module")
def s3_proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(s3_endpoint) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def proxied_credentials(prefect_server: None, s3_proxy: FaultProxy) -> str:
    """A block like aws_credentials, whose endpoint is the proxy: winnow's retry settings."""
    return save_credentials(
        "winnow-test-s3-proxied", s3_proxy.url, "winnow-test-key", "winnow-test-secret-never-logged"
    )


@pytest.fixture(scope="module")
def impatient_credentials(prefect_server: None, s3_proxy: FaultProxy) -> str:
    """Through the proxy, with 2 attempts in all instead of winnow's 9 (RETRY_CONFIG's
    max_attempts=8 counts retries, after the first attempt). Running out of 9 attempts takes
    botocore's backoff (a random part of 1, 2, 4, ... 20 s a wait) over half a minute on
    average. The block's client config is merged over winnow's, so this also shows that a
    block's own retry settings are honoured."""
    return save_credentials(
        "winnow-test-s3-impatient",
        s3_proxy.url,
        "winnow-test-key",
        "winnow-test-secret-never-logged",
        config={"retries": {"mode": "standard", "total_max_attempts": 2}},
    )


def test_throttling_is_retried_until_the_read_succeeds(
    s3_endpoint: str, s3_proxy: FaultProxy, proxied_credentials: str
) -> None:
    bucket = new_bucket(s3_endpoint)
    put(s3_endpoint, bucket, {"raw/busy.jpg": b"worth the wait"})
    s3_proxy.fail(f"/{bucket}/raw/busy.jpg", "slowdown", "slowdown", "slowdown")

    storage = open_storage(f"s3://{bucket}/raw", proxied_credentials)

    assert storage.read_bytes("busy.jpg") == b"worth the wait"
    # 3 refusals, then the answer: more attempts than botocore's default of 3.
    assert [s.fault for s in s3_proxy.seen(f"/{bucket}/raw/busy.jpg")] == ["slowdown"] * 3 + [None]


def test_connection_resets_are_retried_until_the_read_succeeds(
    s3_endpoint: str, s3_proxy: FaultProxy, proxied_credentials: str
) -> None:
    bucket = new_bucket(s3_endpoint)
    put(s3_endpoint, bucket, {"raw/flaky.jpg": b"got through"})
    s3_proxy.fail(f"/{bucket}/raw/flaky.jpg", "reset", "reset")

    storage = open_storage(f"s3://{bucket}/raw", proxied_credentials)

    assert storage.read_bytes("flaky.jpg") == b"got through"
    assert [s.fault for s in s3_proxy.seen(f"/{bucket}/raw/flaky.jpg")] == ["reset", "reset", None]


@pytest.mark.parametrize("fault", ["slowdown", "reset"])
def test_failures_beyond_the_retry_budget_are_a_connection_error_naming_the_object(
    s3_endpoint: str, s3_proxy: FaultProxy, impatient_credentials: str, fault: Fault
) -> None:
    bucket = new_bucket(s3_endpoint)
    put(s3_endpoint, bucket, {"raw/down.jpg": b"unreachable"})
    path = f"/{bucket}/raw/down.jpg"
    s3_proxy.fail(path, fault, fault)

    storage = open_storage(f"s3://{bucket}/raw", impatient_credentials)

    with pytest.raises(ConnectionError, match=f"s3://{bucket}/raw/down.jpg") as caught:
        storage.read_bytes("down.jpg")
    assert not isinstance(caught.value, StorageError | MissingObjectError)
    assert ("SlowDown" in str(caught.value)) == (fault == "slowdown")
    assert len(s3_proxy.seen(path)) == 2  # the block's total_max_attempts
    assert storage.read_bytes("down.jpg") == b"unreachable"  # the store is back


def test_a_connection_reset_mid_body_is_a_connection_error_not_truncated_bytes(
    s3_endpoint: str, s3_proxy: FaultProxy, proxied_credentials: str
) -> None:
    bucket = new_bucket(s3_endpoint)
    data = os.urandom(200_000)
    put(s3_endpoint, bucket, {"raw/cut.jpg": data})
    s3_proxy.fail(f"/{bucket}/raw/cut.jpg", "reset_mid_body")
    storage = open_storage(f"s3://{bucket}/raw", proxied_credentials)

    with pytest.raises(ConnectionError, match=f"s3://{bucket}/raw/cut.jpg"):
        storage.read_bytes("cut.jpg")
    assert storage.read_bytes("cut.jpg") == data


# --- one unreadable object is recorded, and the run goes on -------------------------------

CHECKS = ChecksConfig()


def inspected(storage: Any, key: str) -> dict[str, Any]:
    info = next(i for i in storage.list_objects() if i.key == key)
    return inspect_images([info], storage, 32, CHECKS)[0].row


def test_an_archived_object_is_recorded_unreadable_and_its_neighbour_is_read(
    s3_endpoint: str, aws_credentials: str, tmp_path: Path
) -> None:
    bucket = new_bucket(s3_endpoint)
    client = s3_admin_client(s3_endpoint)
    client.put_object(Bucket=bucket, Key="raw/cold.jpg", Body=JPEG, StorageClass="GLACIER")
    client.put_object(Bucket=bucket, Key="raw/warm.jpg", Body=JPEG)
    storage = open_storage(f"s3://{bucket}/raw", aws_credentials)

    cold = inspected(storage, "cold.jpg")
    assert cold["status"] == "unreadable"
    assert f"s3://{bucket}/raw/cold.jpg is in an archive storage class (InvalidObjectState)" in cold["reason"]
    assert inspected(storage, "warm.jpg")["status"] == "ok"
    # Selected and copied later: the copy is recorded as not made, the others go ahead.
    output = open_storage(f"s3://{bucket}/out", aws_credentials)
    not_copied = copy_selected_images(storage, output, ["cold.jpg", "warm.jpg"])
    assert list(not_copied) == ["cold.jpg"] and "archive storage class" in not_copied["cold.jpg"]
    assert output.read_bytes("selected/warm.jpg") == JPEG


def test_an_object_the_store_keeps_failing_on_is_recorded_after_its_retries(
    s3_endpoint: str, s3_proxy: FaultProxy, impatient_credentials: str
) -> None:
    bucket = new_bucket(s3_endpoint)
    put(s3_endpoint, bucket, {"raw/down.jpg": JPEG})
    storage = open_storage(f"s3://{bucket}/raw", impatient_credentials)
    info = next(iter(storage.list_objects()))
    s3_proxy.fail(f"/{bucket}/raw/down.jpg", "slowdown", "slowdown")

    row = inspect_images([info], storage, 32, CHECKS)[0].row
    assert row["status"] == "unreadable"
    assert f"s3 kept failing (SlowDown) to read s3://{bucket}/raw/down.jpg" in row["reason"]
    assert len(s3_proxy.seen(f"/{bucket}/raw/down.jpg")) == 2  # every retry was spent first


def test_an_object_the_credentials_may_not_read_is_recorded_unreadable(
    locked_s3: LockedS3, prefect_server: None
) -> None:
    reader = open_storage(
        f"s3://{locked_s3.bucket}/raw",
        save_credentials("winnow-test-locked-reader", locked_s3.url, *locked_s3.reader),
    )
    info = next(iter(reader.list_objects()))
    powerless = open_storage(
        f"s3://{locked_s3.bucket}/raw",
        save_credentials("winnow-test-locked-powerless", locked_s3.url, *locked_s3.powerless),
    )
    row = inspect_images([info], powerless, 32, CHECKS)[0].row
    assert row["status"] == "unreadable"
    assert "access denied (AccessDenied) to read" in row["reason"]
    assert locked_s3.powerless[1] not in row["reason"]


def test_an_output_the_credentials_may_read_but_not_write_fails_before_any_work(
    locked_s3: LockedS3, prefect_server: None, tmp_path: Path
) -> None:
    """A list-only credential passed the old check, and the run failed at publish after all its work."""
    block = save_credentials("winnow-test-locked-lister", locked_s3.url, *locked_s3.lister)
    output = open_storage(f"s3://{locked_s3.bucket}/curated", block)
    output.check_access()  # listing is allowed
    source = tmp_path / "src"
    write_scene_crops(source, per_scene=1)
    with pytest.raises(
        StorageError, match=rf"access denied \(AccessDenied\) to write s3://{locked_s3.bucket}/curated/"
    ):
        curate(source=str(source), output=f"s3://{locked_s3.bucket}/curated", aws_credentials=block)
    assert [info.key for info in output.list_objects()] == []  # nothing was published


def test_the_credentials_of_an_assumed_role_renew_before_they_expire(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A block with `assume_role_arn`: the role's temporary credentials are fetched again as
    their end nears, so a run longer than the role's session does not fail at publish."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", s3_endpoint)  # moto answers STS too
    block = AwsCredentials(
        aws_access_key_id="winnow-test-key",
        aws_secret_access_key="winnow-test-secret-never-logged",
        region_name="us-east-1",
        assume_role_arn="arn:aws:iam::123456789012:role/winnow-curator",
        # The shortest session STS grants: 15 minutes, inside botocore's renewal window.
        assume_role_kwargs={"DurationSeconds": 900},
        aws_client_parameters={"endpoint_url": s3_endpoint},
    )
    session = boto3_session(block)
    first = session.get_credentials().get_frozen_credentials()
    second = session.get_credentials().get_frozen_credentials()
    assert first.access_key != "winnow-test-key"  # the role's, not the block's own
    assert first.token and second.token
    assert second.access_key != first.access_key  # renewed, not frozen for the process
    # prefect-aws's own session keeps the first answer for good.
    frozen = block.get_boto3_session().get_credentials()
    assert frozen.get_frozen_credentials().access_key == frozen.get_frozen_credentials().access_key
    # And S3 takes the renewed credentials.
    bucket = f"winnow-{uuid.uuid4().hex[:12]}"
    client = session.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket=bucket)
    assert bucket in {b["Name"] for b in client.list_buckets()["Buckets"]}
