"""A real S3-compatible HTTP server on loopback for the tests: moto's threaded server.

It runs in a child process, so that its memory (moto holds objects in memory) and its
threads stay out of the test process: memory bounds measured in a test are the client's
alone. The fixture points boto3's default chain at it (AWS_ENDPOINT_URL and test
credentials) for the session only, and makes one versioned bucket; stores under test use
their own prefixes in it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

BUCKET = "strata-test"
# Prints the port once the server listens, then serves until its standard input closes.
SERVER = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"""


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    client: Any  # a boto3 S3 client for the test's own look behind a store's back


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    child = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert child.stdout is not None and child.stdin is not None
    try:
        port = int(child.stdout.readline())
        endpoint = f"http://127.0.0.1:{port}"
        with pytest.MonkeyPatch.context() as env:
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
                env.delenv(name, raising=False)
            # No config or credentials file of the machine's user can interfere.
            nothing = tmp_path_factory.mktemp("aws") / "none"
            env.setenv("AWS_CONFIG_FILE", str(nothing))
            env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nothing))
            env.setenv("AWS_ENDPOINT_URL", endpoint)
            env.setenv("AWS_ACCESS_KEY_ID", "testing")
            env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
            env.setenv("AWS_DEFAULT_REGION", "us-east-1")
            client = boto3.client("s3")
            client.create_bucket(Bucket=BUCKET)
            # Versions make every rewrite of a key visible to the tests.
            client.put_bucket_versioning(Bucket=BUCKET,
                                         VersioningConfiguration={"Status": "Enabled"})
            yield S3Server(endpoint, BUCKET, client)
    finally:
        child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
