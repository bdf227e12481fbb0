"""Shared fixtures: real images from scikit-image, and one Prefect test server a session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before Prefect is imported anywhere: an isolated home, no analytics (offline machine),
# and enough time for the first server's database migration on 2 cores.
os.environ.setdefault(
    "PREFECT_HOME", str(Path(os.environ.get("TMPDIR", "/tmp")) / f"winnow-tests-{os.getpid()}")
)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto's server mode) on 127.0.0.1, spoken to over HTTP."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def aws_credentials(prefect_server: None, s3_endpoint: str) -> str:
    """The name of an AwsCredentials block, saved on the test Prefect server, whose client
    parameters point boto3 at the test S3 server."""
    from prefect_aws import AwsClientParameters, AwsCredentials

    name = "winnow-test-s3"
    AwsCredentials(
        aws_access_key_id="winnow-test-key",
        aws_secret_access_key="winnow-test-secret-never-logged",
        region_name="us-east-1",
        aws_client_parameters=AwsClientParameters(endpoint_url=s3_endpoint),
    ).save(name, overwrite=True)
    return name
