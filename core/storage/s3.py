"""The S3 blob store: each blob an object `<prefix>/ab/cdef…` in an S3-compatible bucket.

The layout under the prefix is the local store's under `objects/`, so a store can move
between the two by copying keys. Endpoint, region and credentials come from boto3's usual
chain (AWS_* variables, ~/.aws/config and credentials, instance roles); a non-AWS server
is named by `AWS_ENDPOINT_URL` or `AWS_ENDPOINT_URL_S3`.

Publishing never leaves a wrong object under a digest: the spooled file is uploaded
(multipart above a threshold) to a temporary key `<prefix>/tmp/<random>.part`, the hash
of what the server holds there is checked against the digest, and only then is it copied
to its final key; the temporary key is deleted whatever happens. A crash leaves at most a
temporary key (and, mid-multipart, an incomplete upload): neither is ever listed as a
blob. A bucket lifecycle rule on `<prefix>/tmp/` clears them (see the README).

Every botocore failure is translated into the error tree, so a user sees which bucket,
which endpoint and what to check, never a botocore traceback.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, BinaryIO, cast

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    CredentialRetrievalError,
    NoCredentialsError,
    PartialCredentialsError,
)
from s3transfer.utils import ChunksizeAdjuster

from strata.core.errors import (
    AssetNotFound,
    BlobCorrupt,
    InvalidInput,
    RetryableError,
    StoreNotInitialised,
    StrataError,
)
from strata.core.storage.blobs import CHUNK, BlobStore, parse_digest

MiB = 1024 * 1024
# The key of a blob below the prefix: the local store's `ab/cdef…`.
_BLOB_KEY_RE = re.compile(r"^([0-9a-f]{2})/([0-9a-f]{62})$")
TEMPORARY_KEYS = "tmp/"
# Answers that mean "the credentials are wrong or lack a permission".
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
           "InvalidToken", "AuthorizationHeaderMalformed", "InvalidClientTokenId", "403"}
# Answers that a later attempt may not get (the server is busy or failing).
_TRANSIENT = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "500",
              "502", "503", "504"}


def check_prefix(prefix: str) -> str:
    """The prefix as keys use it; a prefix with `.`/`..` or empty segments, a backslash or
    a control character is refused: some S3-compatible servers normalise such keys into
    other places of the bucket."""
    if prefix == "":
        return prefix
    segments = prefix.split("/")
    if (any(segment in ("", ".", "..") for segment in segments)
            or any(ch == "\\" or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in prefix)):
        raise InvalidInput(
            f"the blob prefix {prefix!r} is refused: use segments of plain characters "
            "separated by single slashes (no '.', '..', empty segments or backslashes)"
        )
    return prefix


class S3BlobStore(BlobStore):
    """Blobs as objects `<prefix>/ab/cdef…` in an S3-compatible bucket.

    `spool` is a local folder for ingests in progress; `multipart_threshold` and
    `part_size` set when and how uploads are split into parts (S3 takes parts of 5 MiB
    and more, except the last).
    """

    def __init__(self, bucket: str, prefix: str, spool: Path, max_image_pixels: int,
                 max_bytes: int, *, multipart_threshold: int = 16 * MiB,
                 part_size: int = 16 * MiB) -> None:
        super().__init__(spool, max_image_pixels, max_bytes)
        self.bucket = bucket
        self.prefix = check_prefix(prefix)
        self._base = f"{self.prefix}/" if self.prefix else ""
        # Few concurrent parts: memory stays bounded (about concurrency times part size).
        self.transfer = TransferConfig(multipart_threshold=multipart_threshold,
                                       multipart_chunksize=part_size, max_concurrency=4,
                                       use_threads=True)

    @cached_property
    def client(self) -> Any:  # botocore builds the client's class at run time
        # Made on first use, so that opening a store costs no connection; in a session of
        # its own, which reads the environment and config files now (boto3's default
        # session keeps the credentials it found first).
        config = Config(retries={"max_attempts": 3, "mode": "standard"},
                        connect_timeout=10, read_timeout=60)
        return boto3.session.Session().client("s3", config=config)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def key_of(self, digest: str) -> str:
        hex_digest = parse_digest(digest)
        return f"{self._base}{hex_digest[:2]}/{hex_digest[2:]}"

    # --- the storage primitives -----------------------------------------------------------

    def _publish(self, temporary: Path, digest: str) -> None:
        if self._exists(digest):
            return  # stored once: the existing object is kept as it is
        final = self.key_of(digest)
        staging_key = f"{self._base}{TEMPORARY_KEYS}{uuid.uuid4().hex}.part"
        with self._translated(f"storing {digest}"):
            try:
                self.client.upload_file(str(temporary), self.bucket, staging_key,
                                        Config=self.transfer,
                                        ExtraArgs={"ChecksumAlgorithm": "SHA256"})
                self._check_upload(staging_key, temporary, digest)
                self.client.copy({"Bucket": self.bucket, "Key": staging_key}, self.bucket,
                                 final, Config=self.transfer)
            finally:
                self.client.delete_object(Bucket=self.bucket, Key=staging_key)

    def _check_upload(self, key: str, temporary: Path, digest: str) -> None:
        """BlobCorrupt unless the object at `key` hashes to `digest`.

        The server keeps a SHA-256 checksum of what it received (of the whole object, or
        of the parts' checksums for a multipart upload). The local file is read again to
        prove that it still hashes to `digest` and to compute the checksum the server
        must report for it: no bytes travel twice. A server that keeps no checksum is
        read back instead, streamed.
        """
        head = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        reported = head.get("ChecksumSHA256")
        if reported is None:
            if not self._hashes_to(key, digest):
                raise BlobCorrupt(f"the upload of {digest} to {self.url} arrived altered; "
                                  "nothing was stored under its digest")
            return
        size, whole, expected = self._local_checksums(temporary)
        if whole != digest or size != head["ContentLength"] or reported.split("-")[0] != expected:
            raise BlobCorrupt(
                f"the upload of {digest} to {self.url} does not hash to its digest "
                f"(the spooled file {'changed' if whole != digest else 'arrived altered'}); "
                "nothing was stored under its digest"
            )

    def _local_checksums(self, path: Path) -> tuple[int, str, str]:
        """The size and digest of the file at `path`, and the base64 SHA-256 checksum S3
        reports for it once uploaded with this store's transfer settings: of the whole
        object below the multipart threshold, else of the concatenated checksums of its
        parts (cut where s3transfer cuts them)."""
        size = path.stat().st_size
        part_size = ChunksizeAdjuster().adjust_chunksize(self.transfer.multipart_chunksize,
                                                         size)
        whole, part = hashlib.sha256(), hashlib.sha256()
        parts: list[bytes] = []
        in_part = read = 0
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                read += len(chunk)
                whole.update(chunk)
                view = memoryview(chunk)
                while view:
                    taken = view[: part_size - in_part]
                    part.update(taken)
                    in_part += len(taken)
                    view = view[len(taken):]
                    if in_part == part_size:
                        parts.append(part.digest())
                        part, in_part = hashlib.sha256(), 0
        if in_part:
            parts.append(part.digest())
        if size >= self.transfer.multipart_threshold:
            checksum = hashlib.sha256(b"".join(parts)).digest()
        else:
            checksum = whole.digest()
        return read, f"sha256:{whole.hexdigest()}", base64.b64encode(checksum).decode()

    def _hashes_to(self, key: str, digest: str) -> bool:
        hasher = hashlib.sha256()
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        with body:
            while chunk := body.read(CHUNK):
                hasher.update(chunk)
        return f"sha256:{hasher.hexdigest()}" == digest

    def _exists(self, digest: str) -> bool:
        with self._translated(f"looking up {digest}"):
            try:
                self.client.head_object(Bucket=self.bucket, Key=self.key_of(digest))
            except ClientError as exc:
                if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise
            return True

    def _open(self, digest: str) -> BinaryIO:
        with self._translated(f"reading {digest}"):
            try:
                answer = self.client.get_object(Bucket=self.bucket, Key=self.key_of(digest))
            except ClientError as exc:
                if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                    raise AssetNotFound(f"blob {digest} is not in the store at {self.url}"
                                        ) from None
                raise
        # botocore's body is a read-only, unseekable binary stream: `open_seekable` spools it.
        return cast(BinaryIO, answer["Body"])

    def iter_digests(self) -> Iterator[str]:
        # S3 lists keys in byte order, so the digests come out sorted.
        with self._translated("listing the blobs"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._base)
            for page in pages:
                for entry in page.get("Contents", ()):
                    match = _BLOB_KEY_RE.fullmatch(entry["Key"][len(self._base):])
                    if match:
                        yield f"sha256:{match.group(1)}{match.group(2)}"

    # --- errors ---------------------------------------------------------------------------

    @contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        """botocore's failures as the error tree, each naming the bucket and endpoint."""
        try:
            yield
        except StrataError:
            raise
        except ClientError as exc:
            raise self._client_error(doing, exc) from None
        except (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError) as exc:
            raise InvalidInput(
                f"{doing} in {self.url}: no usable AWS credentials ({exc}); set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
            ) from None
        except ConnectionError as exc:
            raise RetryableError(
                f"{doing} in {self.url}: cannot reach the S3 endpoint "
                f"{self.client.meta.endpoint_url} ({exc}); is it up, and is "
                "AWS_ENDPOINT_URL right?"
            ) from None
        except BotoCoreError as exc:
            raise StrataError(f"{doing} in {self.url}: {exc}") from None

    def _client_error(self, doing: str, exc: ClientError) -> StrataError:
        code = _code(exc)
        where = f"{doing} in {self.url} (endpoint {self.client.meta.endpoint_url})"
        if code == "NoSuchBucket":
            return StoreNotInitialised(
                f"{where}: the bucket {self.bucket!r} does not exist; create it, or fix "
                "STRATA_BLOB_URL / AWS_ENDPOINT_URL"
            )
        if code in _DENIED:
            return InvalidInput(
                f"{where}: the server refused the credentials ({code}); check "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE and the "
                "bucket's permissions"
            )
        message = exc.response.get("Error", {}).get("Message", "")
        if code in _TRANSIENT:
            return RetryableError(f"{where}: the server failed ({code}: {message}); "
                                  "try again later")
        return StrataError(f"{where}: the server answered {code}: {message}")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
