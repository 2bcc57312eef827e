"""A real S3 endpoint on this machine for the demo and the tests: moto's server over HTTP.

moto keeps objects in memory, so the demo mirrors the bucket to a local folder when it ends and
restores it when it starts again: a second `make demo` sees the first one's watermark, golden
set and registry, exactly as a second run against real S3 would.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tasks.config import S3Settings
from tasks.storage.s3 import ensure_bucket, list_objects, s3_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def moto_server() -> Iterator[str]:
    """Start moto's S3 server on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    # moto accepts any credentials; boto3 still needs some to sign requests.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local-demo")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local-demo")
    port = free_port()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def restore_bucket(s3: S3Settings, snapshot_dir: Path) -> int:
    """Upload a mirrored bucket back; put_object keeps plain-MD5 ETags, so the watermark matches."""
    client = s3_client(s3)
    ensure_bucket(client, s3.bucket)
    files = (
        sorted(p for p in snapshot_dir.rglob("*") if p.is_file()) if snapshot_dir.is_dir() else []
    )
    for path in files:
        key = path.relative_to(snapshot_dir).as_posix()
        client.put_object(Bucket=s3.bucket, Key=key, Body=path.read_bytes())
    return len(files)


def mirror_bucket(s3: S3Settings, snapshot_dir: Path) -> int:
    """Copy every object of the bucket into snapshot_dir (replacing what was there)."""
    client = s3_client(s3)
    keys = [obj["Key"] for obj in list_objects(client, s3.bucket, "")]
    tmp = snapshot_dir.with_name(snapshot_dir.name + ".partial")
    for key in keys:
        target = tmp / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(client.get_object(Bucket=s3.bucket, Key=key)["Body"].read())
    if snapshot_dir.exists():
        shutil.rmtree(snapshot_dir)
    tmp.mkdir(parents=True, exist_ok=True)
    tmp.rename(snapshot_dir)
    return len(keys)
