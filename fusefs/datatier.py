"""A filesystem's object data tier, opened and checked as a command needs it.

mkfs records where the objects live (``FsConfig.data_url``, ``s3_endpoint``); every opening (mkfs before
the filesystem is created, each mount) checks at once that the bucket exists and that the credentials may
write and delete there, so a wrong setting fails with one line instead of at the first large file.
"""

from __future__ import annotations

from dataclasses import dataclass

from blocks.objects import DataUrl, ObjectStore, load_credentials
from metadata.model import FsConfig


@dataclass
class DataTierRequest:
    """mkfs --data, --s3-endpoint, --s3-credentials."""

    url: DataUrl
    endpoint: str
    credentials_file: str | None


def open_data_tier(config: FsConfig, credentials_file: str | None = None) -> ObjectStore | None:
    """The checked object store of `config`'s data tier, None without one.  Credentials: the file, else
    the standard AWS environment variables (blocks/objects.load_credentials)."""
    if not config.data_url:
        return None
    objects = ObjectStore(
        config.s3_endpoint, DataUrl.parse(config.data_url), load_credentials(credentials_file)
    )
    objects.check()
    return objects


def describe_data_tier(config: FsConfig) -> str:
    """For status and mkfs: where large files' data lives; empty without a data tier (as before one)."""
    return f"data {config.data_url} at {config.s3_endpoint}; " if config.data_url else ""
