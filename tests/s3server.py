"""A real S3 API server on 127.0.0.1 for the tests: moto's, in a thread of the test process, as
s3fs's own test suite runs it, with fake credentials in the environment.

moto keeps its buckets in the process, so a server stopped and started again on the same port
is the same store after an outage. Use the fixtures by importing them into a test module
(`from s3server import aws_env, s3server`) or with `pytest_plugins = ['s3server']` in conftest.py.
"""
from __future__ import annotations

import logging
import os
import socket
import uuid
from contextlib import contextmanager

import pytest

ACCESS_KEY = 'AKIAMIRRORTEST0000'
SECRET = 'mirror-test-secret-5kQ9zR'  # fake; tests check it never shows in any output or file
REGION = 'us-east-1'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class S3Server:
    def __init__(self):
        logging.getLogger('werkzeug').setLevel(logging.ERROR)  # else one log line per request
        self.port, self._server, self._client = free_port(), None, None
        self.start()

    @property
    def endpoint(self) -> str:
        return f'http://127.0.0.1:{self.port}'

    def start(self) -> None:
        from moto.server import ThreadedMotoServer
        self._server = ThreadedMotoServer(ip_address='127.0.0.1', port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        """Down as a dead host is: moto's stop() keeps the socket listening, so clients would hang
        in its backlog instead of being refused; close it too."""
        self._server.stop()
        self._server._server.server_close()

    def client(self):
        if self._client is None:
            import boto3
            self._client = boto3.client('s3', endpoint_url=self.endpoint, region_name=REGION,
                                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET)
        return self._client

    def bucket(self) -> str:
        """A new empty bucket: tests share the server, not their buckets."""
        name = f'test-{uuid.uuid4().hex[:12]}'
        self.client().create_bucket(Bucket=name)
        return name

    def objects(self, bucket: str, prefix: str = '') -> dict[str, bytes]:
        client, out = self.client(), {}
        for page in client.get_paginator('list_objects_v2').paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get('Contents', []):
                out[obj['Key']] = client.get_object(Bucket=bucket, Key=obj['Key'])['Body'].read()
        return out

    def unfinished_uploads(self, bucket: str, prefix: str = '') -> list[str]:
        listed = self.client().list_multipart_uploads(Bucket=bucket, Prefix=prefix)
        return [u['Key'] for u in listed.get('Uploads', [])]

    @contextmanager
    def checking_credentials(self):
        """moto accepts any credentials unless told to check them (against its IAM, where ours are not)."""
        from moto import settings
        before = settings.INITIAL_NO_AUTH_ACTION_COUNT
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        try:
            yield
        finally:
            settings.INITIAL_NO_AUTH_ACTION_COUNT = before


@pytest.fixture(scope='session')
def s3server():
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def aws_env(monkeypatch):
    """Credentials from the environment only: no ~/.aws, no instance metadata, no endpoint."""
    for var in list(os.environ):
        if var.startswith('AWS_'):
            monkeypatch.delenv(var)
    monkeypatch.setenv('AWS_ACCESS_KEY_ID', ACCESS_KEY)
    monkeypatch.setenv('AWS_SECRET_ACCESS_KEY', SECRET)
    monkeypatch.setenv('AWS_DEFAULT_REGION', REGION)
    monkeypatch.setenv('AWS_SHARED_CREDENTIALS_FILE', os.devnull)
    monkeypatch.setenv('AWS_CONFIG_FILE', os.devnull)
    monkeypatch.setenv('AWS_EC2_METADATA_DISABLED', 'true')
