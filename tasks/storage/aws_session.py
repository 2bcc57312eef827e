"""Where the AWS credentials come from: a prefect-aws `AwsCredentials` block, or boto3's chain.

With `s3.credentials_block` set (`RETRAIN_S3__CREDENTIALS_BLOCK=name`), every S3 and SQS client
of the product signs with the credentials of the `AwsCredentials` block of that name on the
Prefect API: an operator stores them once (in the UI, or `AwsCredentials(...).save(name)`) and
workers need no AWS variables. Unset, boto3's usual chain applies (AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance role). The endpoint and region stay in
`RETRAIN_S3__*`; the block's own region and client parameters are not used for S3.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import boto3

from tasks.config import S3Settings

if TYPE_CHECKING:
    from prefect_aws import AwsCredentials


class CredentialsBlockNotFound(LookupError):
    """`s3.credentials_block` names a block the Prefect API does not have."""


def aws_session(s3: S3Settings) -> boto3.Session:
    """A new boto3 session (sessions are not thread-safe; clients made from one are) signing
    with the configured block's credentials, or boto3's default chain when none is set."""
    if not s3.credentials_block:
        return boto3.Session()
    return credentials_block(s3.credentials_block).get_boto3_session()


@lru_cache(maxsize=8)
def credentials_block(name: str) -> AwsCredentials:
    """The `AwsCredentials` block `name`, read from the Prefect API once per process."""
    from prefect_aws import AwsCredentials  # imports in ~1 s: only when a block is configured

    try:
        return AwsCredentials.load(name)
    except ValueError as missing:  # Prefect: "Unable to find block document named ..."
        raise CredentialsBlockNotFound(
            f"RETRAIN_S3__CREDENTIALS_BLOCK is {name!r}, but the Prefect API has no "
            f"AwsCredentials block of that name: create it (Blocks → AWS Credentials in the UI, "
            f"or `AwsCredentials(aws_access_key_id=..., aws_secret_access_key=...).save("
            f"{name!r})`), or unset the variable to use boto3's own credential chain"
        ) from missing
