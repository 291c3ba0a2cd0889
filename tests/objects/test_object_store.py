"""blocks/objects.py against a real SeaweedFS: names, round trips, listing, and each failure as one line."""

from __future__ import annotations

import socket

import pytest

from blocks.objects import (
    Credentials,
    DataUrl,
    ObjectMissing,
    ObjectStore,
    ObjectStoreError,
    load_credentials,
    object_name,
    parse_object_name,
)


def test_put_get_list_delete(objects: ObjectStore) -> None:
    objects.check()
    name = object_name(7, 3)
    objects.put(name, b"x" * 100_000)
    assert objects.get(name) == b"x" * 100_000
    assert list(objects.names()) == [name]
    objects.delete(name)
    assert list(objects.names()) == []
    with pytest.raises(ObjectMissing, match="is missing"):
        objects.get(name)


def test_prefixes_keep_filesystems_apart(seaweedfs, bucket) -> None:  # type: ignore[no-untyped-def]
    credentials = load_credentials(seaweedfs.credentials_file)
    one = ObjectStore(seaweedfs.endpoint, DataUrl(bucket, "a"), credentials)
    two = ObjectStore(seaweedfs.endpoint, DataUrl(bucket, "a/b"), credentials)
    one.put(object_name(1, 1), b"1")
    two.put(object_name(2, 2), b"2")
    assert list(two.names()) == [object_name(2, 2)]
    assert object_name(2, 2) not in list(one.names())


def test_object_names() -> None:
    assert parse_object_name(object_name(0xABC, 2**63 - 1)) == (0xABC, 2**63 - 1)
    assert parse_object_name(".fusefs-probe") is None
    assert parse_object_name(object_name(1, 1) + "x") is None


def test_missing_bucket(seaweedfs) -> None:  # type: ignore[no-untyped-def]
    store = ObjectStore(
        seaweedfs.endpoint, DataUrl("no-such-bucket", "p"), load_credentials(seaweedfs.credentials_file)
    )
    with pytest.raises(ObjectStoreError, match="^bucket 'no-such-bucket' does not exist at http"):
        store.check()


def test_bad_credentials_never_shown(seaweedfs, bucket) -> None:  # type: ignore[no-untyped-def]
    good = load_credentials(seaweedfs.credentials_file)
    wrong = Credentials(good.access_key, "not-the-secret-1234")
    with pytest.raises(ObjectStoreError, match="refused the credentials") as caught:
        ObjectStore(seaweedfs.endpoint, DataUrl(bucket, "p"), wrong).check()
    assert "not-the-secret-1234" not in str(caught.value)
    assert "not-the-secret-1234" not in repr(wrong)
    assert "\n" not in str(caught.value)


def test_unreachable() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = ObjectStore(f"http://127.0.0.1:{port}", DataUrl("bucket", "p"), Credentials("k", "s"))
    with pytest.raises(ObjectStoreError, match="unreachable"):
        store.check()


@pytest.mark.parametrize(
    "text, reason",
    [
        ("http://bucket/p", "must look like"),
        ("s3://B/p", "bad bucket name"),
        ("s3://ab/p", "bad bucket name"),
        ("s3://bucket/a//b", "bad prefix"),
        ("s3://bucket/a/../b", "bad prefix"),
    ],
)
def test_bad_data_urls(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        DataUrl.parse(text)


def test_data_url_round_trip() -> None:
    assert str(DataUrl.parse("s3://my-bucket/x/y/")) == "s3://my-bucket/x/y"
    assert DataUrl.parse("s3://my-bucket") == DataUrl("my-bucket", "")


def test_credentials_sources(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert load_credentials(None, {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}) == Credentials(
        "k", "s"
    )
    with pytest.raises(ObjectStoreError, match="no S3 credentials"):
        load_credentials(None, {})
    with pytest.raises(ObjectStoreError, match="cannot read S3 credentials file .*No such file"):
        load_credentials(str(tmp_path / "missing"))
    other = tmp_path / "other"
    other.write_text("[work]\naws_access_key_id = k\n")
    with pytest.raises(ObjectStoreError, match="has no \\[default\\]"):
        load_credentials(str(other))
    garbage = tmp_path / "garbage"
    garbage.write_text("no section here\n")
    with pytest.raises(ObjectStoreError, match="cannot read S3 credentials file .*MissingSectionHeaderError"):
        load_credentials(str(garbage))
