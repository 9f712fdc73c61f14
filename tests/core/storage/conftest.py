"""Fixtures of the storage tests: the loopback S3 server (tests/core/storage/s3server.py)."""

from tests.core.storage.s3server import s3_server

__all__ = ["s3_server"]
