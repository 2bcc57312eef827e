"""A shell with no AWS credentials anywhere boto3 looks."""

from __future__ import annotations

from pathlib import Path


def no_aws_credentials(monkeypatch, tmp_path: Path) -> None:
    """What a new user's shell looks like: no keys, no profile files, no instance role."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
