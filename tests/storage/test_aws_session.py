"""AWS credentials from a prefect-aws `AwsCredentials` block (RETRAIN_S3__CREDENTIALS_BLOCK),
against the moto server with its credential checking on and a real Prefect API: with no AWS
variables on the worker, the block's keys sign every S3 request; a missing block or none at all
fails the start-up check with the fix, never with a secret."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import boto3
import httpx
import pytest
from prefect_aws import AwsCredentials

from tasks.environment import BUCKET, CREDENTIALS, ENDPOINT, check_environment
from tasks.storage.s3 import get_json, put_json, s3_client
from tests.helpers.aws import no_aws_credentials

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_api")]


@pytest.fixture
def worker_key(settings, s3_endpoint: str) -> Iterator[tuple[str, str]]:
    """An IAM user's access key on moto, allowed S3; then moto's credential checking on (any
    other key is refused), restored afterwards."""
    iam = boto3.client("iam", endpoint_url=s3_endpoint, region_name=settings.s3.region)
    user = f"retrain-worker-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    iam.put_user_policy(
        UserName=user,
        PolicyName="s3",
        PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
        '"Action": "s3:*", "Resource": "*"}]}',
    )
    key = iam.create_access_key(UserName=user)["AccessKey"]
    answer = httpx.post(f"{s3_endpoint}/moto-api/reset-auth", content=b"0").json()
    try:
        yield key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        previous = answer["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"].encode()
        httpx.post(f"{s3_endpoint}/moto-api/reset-auth", content=previous)


def with_block(settings, name: str | None):
    return settings.model_copy(
        update={"s3": settings.s3.model_copy(update={"credentials_block": name})}
    )


def test_the_block_signs_s3_requests_when_the_worker_has_no_aws_variables(
    settings, worker_key, monkeypatch, tmp_path
):
    key_id, secret = worker_key
    name = f"retrain-s3-{uuid.uuid4().hex[:8]}"
    AwsCredentials(aws_access_key_id=key_id, aws_secret_access_key=secret).save(name)
    no_aws_credentials(monkeypatch, tmp_path)
    blocked = with_block(settings, name)

    client = s3_client(blocked.s3)
    put_json(client, settings.s3.bucket, "state/block-test.json", {"signed": "by the block"})
    assert get_json(client, settings.s3.bucket, "state/block-test.json").body == {
        "signed": "by the block"
    }
    checks = {c.name: c for c in check_environment(blocked).checks}
    assert (checks[CREDENTIALS].status, checks[ENDPOINT].status, checks[BUCKET].status) == (
        "ok",
        "ok",
        "ok",
    )
    assert checks[CREDENTIALS].message == f"found (AwsCredentials block {name!r})"

    # the same worker without the block: no credentials, and the message names the block option
    unsigned = {c.name: c for c in check_environment(with_block(settings, None)).checks}
    assert unsigned[CREDENTIALS].status == "failed"
    assert "RETRAIN_S3__CREDENTIALS_BLOCK" in unsigned[CREDENTIALS].message
    # a block with a key moto does not know is refused by the endpoint, its secret unprinted
    AwsCredentials(aws_access_key_id="AKIAUNKNOWN000000001", aws_secret_access_key=secret).save(
        f"{name}-stale"
    )
    stale = {c.name: c for c in check_environment(with_block(settings, f"{name}-stale")).checks}
    assert stale[CREDENTIALS].status == "failed"
    assert "InvalidAccessKeyId" in stale[CREDENTIALS].message
    every_message = " ".join(c.message for c in [*checks.values(), *stale.values()])
    assert secret not in every_message and key_id not in every_message


def test_a_missing_block_fails_the_start_up_check_with_how_to_create_it(settings):
    name = f"never-saved-{uuid.uuid4().hex[:8]}"

    checks = {c.name: c for c in check_environment(with_block(settings, name)).checks}

    assert checks[CREDENTIALS].status == "failed"
    assert "no AwsCredentials block of that name" in checks[CREDENTIALS].message
    assert (
        name in checks[CREDENTIALS].message and "unset the variable" in checks[CREDENTIALS].message
    )
    assert checks[ENDPOINT].status == checks[BUCKET].status == "skipped"
