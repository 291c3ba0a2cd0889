"""The object data tier: chunk versions as immutable objects in a bucket of an S3-compatible object store.

A filesystem with a data tier (``mkfs --data s3://BUCKET/PREFIX --s3-endpoint URL``) keeps each sealed
chunk version as one object named ``PREFIX/<chunk id>.<version>`` (hex): a new version is a new object,
never an overwrite, so a reader holding an older record still finds what it points to, and a cache file
keyed by the same name can never be served for another version.

Credentials come from the standard AWS environment variables or from a file in the AWS shared
credentials format; they are never stored in the metadata store and never appear in a message
(``Credentials`` hides the secret from ``repr``).  Every failure is an ``ObjectStoreError`` with one line
saying what went wrong, without the secret.
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from .errors import BlockError

#: How long one request may take to connect and to answer; the caller retries (uploads) or gives up
#: with EIO at its own deadline (reads).
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_OBJECT_NAME = re.compile(r"([0-9a-f]{16})\.([0-9a-f]{16})")


class ObjectStoreError(BlockError):
    """The object store could not do what was asked; the message is one line for the user (EIO at the
    FUSE boundary, as any ``BlockError``)."""


class ObjectMissing(ObjectStoreError):
    """No object has that name (deleted, or never uploaded)."""


@dataclass(frozen=True)
class DataUrl:
    """Where a filesystem's objects live: ``s3://BUCKET/PREFIX``."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, text: str) -> DataUrl:
        """Raises ValueError with a one-line reason."""
        if not text.startswith("s3://"):
            raise ValueError(f"data URL must look like s3://BUCKET/PREFIX, not {text!r}")
        bucket, _, prefix = text[len("s3://") :].partition("/")
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise ValueError(f"bad bucket name {bucket!r}: 3-63 lowercase letters, digits, dots and hyphens")
        prefix = prefix.strip("/")
        if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
            raise ValueError(f"bad prefix {prefix!r} in data URL {text!r}")
        return cls(bucket, prefix)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str = field(repr=False)


def load_credentials(path: str | None, environ: Mapping[str, str] = os.environ) -> Credentials:
    """Credentials from `path` (AWS shared credentials format, section ``[default]`` or the only one) or,
    without a path, from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, else from the file that
    AWS_SHARED_CREDENTIALS_FILE names."""
    if path is None and not environ.get("AWS_ACCESS_KEY_ID"):
        path = environ.get("AWS_SHARED_CREDENTIALS_FILE") or None
    if path is None:
        key, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
        if not key or not secret:
            raise ObjectStoreError(
                "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "or name a credentials file"
            )
        return Credentials(key, secret)
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as file:
            parser.read_file(file)
    except (OSError, UnicodeDecodeError, configparser.Error) as error:
        reason = error.strerror if isinstance(error, OSError) else type(error).__name__
        raise ObjectStoreError(f"cannot read S3 credentials file {path!r}: {reason}") from None
    sections = parser.sections()
    section = "default" if "default" in sections else (sections[0] if len(sections) == 1 else None)
    values = parser[section] if section is not None else {}
    key, secret = values.get("aws_access_key_id"), values.get("aws_secret_access_key")
    if not key or not secret:
        raise ObjectStoreError(
            f"S3 credentials file {path!r} has no [default] aws_access_key_id and aws_secret_access_key"
        )
    return Credentials(key.strip(), secret.strip())


def object_name(chunk_id: int, version: int) -> str:
    return f"{chunk_id:016x}.{version:016x}"


def parse_object_name(name: str) -> tuple[int, int] | None:
    """(chunk id, version) of an object name, None for a name this filesystem did not make."""
    match = _OBJECT_NAME.fullmatch(name)
    return None if match is None else (int(match[1], 16), int(match[2], 16))


class ObjectStore:
    """One filesystem's objects: a prefix in a bucket.  Methods are synchronous (run them in a thread)
    and safe to call from many threads (boto3 clients are)."""

    def __init__(self, endpoint: str, url: DataUrl, credentials: Credentials) -> None:
        # Imported here: boto3 takes ~0.3 s to import, which no command or mount without a data tier
        # should pay.
        import boto3
        from botocore.config import Config

        self.endpoint = endpoint
        self.url = url
        self._client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=credentials.access_key,
            aws_secret_access_key=credentials.secret_key,
            region_name="us-east-1",
            config=Config(
                connect_timeout=CONNECT_TIMEOUT_S,
                read_timeout=READ_TIMEOUT_S,
                retries={"max_attempts": 1},  # the callers retry with their own policy
                # No SHA-256 of each body for its signature (CPU in this process; a 4 MiB chunk costs
                # ~10 ms): the CRC32 header botocore adds to an upload lets the store check it, and every
                # read checks the chunk's own crc table (blocks/tier.py), so the CRC32 botocore would
                # check again on downloads is skipped too.
                s3={"addressing_style": "path", "payload_signing_enabled": False},
                response_checksum_validation="when_required",
                max_pool_connections=32,
            ),
        )

    def _key(self, name: str) -> str:
        return f"{self.url.prefix}/{name}" if self.url.prefix else name

    def check(self) -> None:
        """That the bucket exists and the credentials may list, write and delete in it."""
        probe = ".fusefs-probe"
        self._call("check", lambda: self._client.head_bucket(Bucket=self.url.bucket))
        self.put(probe, b"")
        self.delete(probe)

    def put(self, name: str, data: bytes) -> None:
        self._call(
            name, lambda: self._client.put_object(Bucket=self.url.bucket, Key=self._key(name), Body=data)
        )

    def get(self, name: str) -> bytes:
        def fetch() -> bytes:
            reply = self._client.get_object(Bucket=self.url.bucket, Key=self._key(name))
            return bytes(reply["Body"].read())

        return self._call(name, fetch)

    def delete(self, name: str) -> None:
        self._call(name, lambda: self._client.delete_object(Bucket=self.url.bucket, Key=self._key(name)))

    def names(self) -> Iterator[str]:
        """Names of every object under the prefix."""
        return (name for name, _ in self.listing())

    def listing(self) -> Iterator[tuple[str, float]]:
        """(name, time of upload in seconds since the epoch) of every object under the prefix."""
        start = f"{self.url.prefix}/" if self.url.prefix else ""
        paginator = self._client.get_paginator("list_objects_v2")
        pages = self._call("list", lambda: list(paginator.paginate(Bucket=self.url.bucket, Prefix=start)))
        for page in pages:
            for entry in page.get("Contents", []):
                yield entry["Key"][len(start) :], entry["LastModified"].timestamp()

    def _call(self, what: str, request):  # type: ignore[no-untyped-def]
        import botocore.exceptions

        try:
            return request()
        except botocore.exceptions.ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", "?"))
            raise self._client_error(what, code) from None
        except botocore.exceptions.BotoCoreError as error:
            raise ObjectStoreError(f"object store {self.endpoint} unreachable: {error}") from None

    def _client_error(self, what: str, code: str) -> ObjectStoreError:
        where = f"{self.url} at {self.endpoint}"
        if code in ("NoSuchKey", "404") and what != "check":
            return ObjectMissing(f"object {what} is missing from {where}")
        if code in ("NoSuchBucket", "404"):
            return ObjectStoreError(f"bucket {self.url.bucket!r} does not exist at {self.endpoint}")
        if code in ("403", "AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "Forbidden"):
            return ObjectStoreError(f"object store {where} refused the credentials ({code})")
        return ObjectStoreError(f"object store {where} failed on {what}: {code}")
