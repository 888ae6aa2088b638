"""A real S3 protocol server: moto in server mode on 127.0.0.1, in a process of its own.

    with MotoServer() as server:             # python -m moto.server on a free port
        server.endpoint                      # http://127.0.0.1:<port>
        server.create_bucket("images")       # a bucket to store into
        server.options                       # S3Options pointing at it

No in-process mocks: the code under test talks HTTP to a separate process, as it would to S3,
R2 or MinIO. `MotoServer(enforce_auth=True)` refuses every key (it knows no IAM user), for
wrong-key tests. The tests' `s3_server` and `s3_location` fixtures are in tests/conftest.py.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import boto3

from harness.ports import free_port

if TYPE_CHECKING:
    from flux_worker.storage import S3Options

START_TIMEOUT = 20.0
KEY_ID, SECRET = "AKIAFLUXTEST00000001", "flux-test-secret-key-0123456789abcdefghij"


class MotoServer:
    """One moto server process on 127.0.0.1, restartable on its port (its data is then lost)."""

    def __init__(self, *, enforce_auth: bool = False, port: int | None = None):
        self.port = port or free_port()
        self.enforce_auth = enforce_auth
        self._process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def options(self) -> S3Options:
        """S3Options for this server (the package's own type: for tests of its S3 code)."""
        # Imported here, so that starting the server needs nothing from the package under test.
        from flux_worker.storage import S3Options

        return S3Options(region="us-east-1", endpoint_url=self.endpoint, access_key_id=KEY_ID,
                         secret_access_key=SECRET)

    def env(self) -> dict[str, str]:
        """The service's variables that point s3:// storage at this server."""
        return {"S3_ENDPOINT_URL": self.endpoint, "AWS_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}

    def client(self):
        """A boto3 client for inspecting the bucket from the test's side."""
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh random name by default) and return its name."""
        name = name or "flux-" + secrets.token_hex(6)
        client = self.client()
        client.create_bucket(Bucket=name)
        client.close()
        return name

    def make_public(self, bucket: str) -> None:
        """Let anyone GET the bucket's objects (what an R2 public bucket or a CDN does)."""
        policy = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{bucket}/*"}]}
        client = self.client()
        client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
        client.close()

    def start(self) -> None:
        """Start the server and wait until it answers."""
        if self._process is not None and self._process.poll() is None:
            return
        env = dict(os.environ)
        if self.enforce_auth:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"  # check every request's key (none exist)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto server exited at start on port {self.port}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto server did not listen on port {self.port}")

    def stop(self) -> None:
        """Stop the server."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> MotoServer:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

