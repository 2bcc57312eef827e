"""Start-up checks: can this machine run the pipeline? Answered in seconds, before any stage.

Without them a run with no AWS credentials, a dead S3 endpoint, a missing bucket, an unreachable
Prefect API or a base model that is not there fails minutes in (after a Prefect server started
and boto3 retried) with a bare library error. Each check here fails with the setting or command
that fixes it. One S3 request answers three questions (are the credentials accepted, does the
endpoint answer, is the bucket there), with short timeouts and no retries.

Secret values never reach a message: credentials are named by where they came from (`env`,
`shared-credentials-file`, `iam-role`, ...), URLs lose any user:password part.

    retrain doctor [--json]       # the same checks from the command line (flows/cli/doctor.py)
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    HTTPClientError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from pydantic import BaseModel, computed_field

from tasks.config import EnvCheckSettings, S3Settings, Settings
from tasks.storage import layout
from tasks.storage.aws_session import CredentialsBlockNotFound, aws_session
from tasks.train.base_model import base_model_problem

Status = Literal["ok", "failed", "skipped"]

CREDENTIALS = "s3 credentials"
ENDPOINT = "s3 endpoint"
BUCKET = "s3 bucket"
PREFECT_API = "prefect api"
BASE_MODEL = "base model"

DEMO_HINT = "or try everything locally with `retrain demo`, which needs none of this"
# S3 error codes that mean "these credentials are not valid" (not "not allowed")
REJECTED_CREDENTIALS = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
}


class Check(BaseModel):
    name: str
    status: Status
    message: str  # what was found, or what to set or do


class EnvironmentReport(BaseModel):
    checks: list[Check]

    @computed_field
    @property
    def ok(self) -> bool:
        return all(check.status != "failed" for check in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if check.status == "failed"]


class EnvironmentNotReady(RuntimeError):
    """A start-up check failed; the message lists each failure with its fix."""

    def __init__(self, report: EnvironmentReport) -> None:
        self.report = report
        lines = [f"- {check.name}: {check.message}" for check in report.failures]
        super().__init__("this environment cannot run the pipeline yet:\n" + "\n".join(lines))


def check_environment(settings: Settings) -> EnvironmentReport:
    """Every start-up check; none raises, each failure names its fix.

    S3 and the Prefect API are asked at the same time, so two dead endpoints cost one timeout.
    Each thread runs in a copy of this context: Prefect keeps its settings (a temporary
    PREFECT_API_URL, say) in context variables, which a new thread would not see.
    """
    with ThreadPoolExecutor(max_workers=2) as pool:
        s3 = pool.submit(copy_context().run, _s3_checks, settings.s3, settings.env_check)
        prefect = pool.submit(copy_context().run, _prefect_api_check, settings.env_check)
        s3_checks = s3.result()
        # an s3:// base model is listed only through an S3 that answered
        s3_ok = all(check.status == "ok" for check in s3_checks)
        base_model = _base_model_check(settings, s3_ok)
        return EnvironmentReport(checks=[*s3_checks, prefect.result(), base_model])


def require_ready(settings: Settings) -> EnvironmentReport:
    """check_environment, raising EnvironmentNotReady if anything failed (flows call this)."""
    report = check_environment(settings)
    if not report.ok:
        raise EnvironmentNotReady(report)
    return report


def without_userinfo(url: str) -> str:
    """The URL without a `user:password@` part, fit for a message."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _s3_where(s3: S3Settings) -> str:
    if s3.endpoint_url:
        return f"S3 endpoint {without_userinfo(s3.endpoint_url)} (RETRAIN_S3__ENDPOINT_URL)"
    return f"AWS S3 in {s3.region} (RETRAIN_S3__ENDPOINT_URL unset)"


def _ok(name: str, message: str) -> Check:
    return Check(name=name, status="ok", message=message)


def _failed(name: str, message: str) -> Check:
    return Check(name=name, status="failed", message=message)


def _not_asked(*names: str) -> list[Check]:
    """Checks that could not run because one before them failed."""
    return [Check(name=n, status="skipped", message="not checked: see above") for n in names]


def _s3_checks(s3: S3Settings, env: EnvCheckSettings) -> list[Check]:
    try:
        session = aws_session(s3)
        credentials = session.get_credentials()
    except CredentialsBlockNotFound as missing:
        return [_failed(CREDENTIALS, str(missing)), *_not_asked(ENDPOINT, BUCKET)]
    except PartialCredentialsError as partial:  # names the variable, never its value
        message = (
            f"incomplete AWS credentials ({partial}): set both AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY, {DEMO_HINT}"
        )
        return [_failed(CREDENTIALS, message), *_not_asked(ENDPOINT, BUCKET)]
    block = s3.credentials_block
    if credentials is None and block:
        message = (
            f"the AwsCredentials block {block!r} (RETRAIN_S3__CREDENTIALS_BLOCK) holds no "
            "usable credentials: set its access key ID and secret access key (or a profile "
            "this worker has)"
        )
        return [_failed(CREDENTIALS, message), *_not_asked(ENDPOINT, BUCKET)]
    if credentials is None:
        message = (
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or "
            "AWS_PROFILE, or give the worker an instance role, or name a prefect-aws "
            f"AwsCredentials block in RETRAIN_S3__CREDENTIALS_BLOCK), {DEMO_HINT}"
        )
        return [_failed(CREDENTIALS, message), *_not_asked(ENDPOINT, BUCKET)]
    source = f"AwsCredentials block {block!r}" if block else credentials.method
    found = _ok(CREDENTIALS, f"found ({source})")
    where = _s3_where(s3)
    # one attempt with short timeouts: a dead endpoint answers in seconds, not after retries
    config = Config(
        connect_timeout=env.connect_timeout_s,
        read_timeout=env.read_timeout_s,
        retries={"total_max_attempts": 1},
    )
    try:
        client = session.client(
            "s3", endpoint_url=s3.endpoint_url, region_name=s3.region, config=config
        )
    except ValueError:  # botocore refuses a malformed endpoint before any request
        message = f"{where} is not a URL: set it to http(s)://host:port, or unset it for AWS"
        return [found, _failed(ENDPOINT, message), *_not_asked(BUCKET)]
    return _probe_bucket(client, s3, where, found)


def _probe_bucket(client: Any, s3: S3Settings, where: str, found: Check) -> list[Check]:
    """List one raw object (the run's first request): its answer decides the three S3 checks."""
    answered = _ok(ENDPOINT, f"{where} answered")
    try:
        client.list_objects_v2(Bucket=s3.bucket, Prefix=s3.raw_prefix, MaxKeys=1)
    except (BotoConnectionError, HTTPClientError) as unreachable:
        message = (
            f"{where} is not reachable ({type(unreachable).__name__}): start it or fix "
            f"RETRAIN_S3__ENDPOINT_URL (unset means AWS), {DEMO_HINT}"
        )
        return [found, _failed(ENDPOINT, message), *_not_asked(BUCKET)]
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", "unknown"))
        if code in REJECTED_CREDENTIALS:
            message = (
                f"{where} rejected the AWS credentials ({code}): set a valid "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY pair (or refresh the session token)"
            )
            return [_failed(CREDENTIALS, message), answered, *_not_asked(BUCKET)]
        if code in ("AccessDenied", "AllAccessDisabled"):
            message = (
                f"{found.message}, but they may not list {layout.raw_uri(s3)} "
                f"({code}): grant s3:ListBucket, s3:GetObject and s3:PutObject on the bucket"
            )
            return [_failed(CREDENTIALS, message), answered, *_not_asked(BUCKET)]
        if code == "NoSuchBucket":
            message = (
                f"bucket {s3.bucket!r} does not exist at {where}: create it "
                f"(`aws s3 mb {layout.uri(s3)}`) or set RETRAIN_S3__BUCKET, {DEMO_HINT}"
            )
            return [found, answered, _failed(BUCKET, message)]
        message = (
            f"{where} answered {code} to a bucket listing: check RETRAIN_S3__ENDPOINT_URL "
            "and RETRAIN_S3__REGION"
        )
        return [found, _failed(ENDPOINT, message), *_not_asked(BUCKET)]
    return [found, answered, _ok(BUCKET, f"{layout.uri(s3)} is readable")]


def _prefect_api_check(env: EnvCheckSettings) -> Check:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    api_url = PREFECT_API_URL.value()
    if not api_url:
        return Check(
            name=PREFECT_API,
            status="skipped",
            message="PREFECT_API_URL is not set: runs start a temporary local Prefect server",
        )
    where = without_userinfo(api_url)
    timeout = httpx.Timeout(env.read_timeout_s, connect=env.connect_timeout_s)
    # no retries: the client otherwise backs off for up to a minute on a dead server
    with (
        temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}),
        get_client(sync_client=True, httpx_settings={"timeout": timeout}) as client,
    ):
        error = client.api_healthcheck()
    if error is None:
        return Check(name=PREFECT_API, status="ok", message=f"{where} answered")
    if isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
        fix = (
            "set PREFECT_API_KEY (or PREFECT_API_AUTH_STRING) for this server"
            if status in (401, 403)
            else "PREFECT_API_URL must end in /api (e.g. http://127.0.0.1:4200/api)"
        )
        return Check(name=PREFECT_API, status="failed", message=f"{where} answered {status}: {fix}")
    return Check(
        name=PREFECT_API,
        status="failed",
        message=f"Prefect API at {where} is not reachable ({type(error).__name__}): start it "
        "(`prefect server start`, or `make up`), fix PREFECT_API_URL, or unset PREFECT_API_URL "
        "to run with a temporary local server",
    )


def _base_model_check(settings: Settings, s3_ok: bool) -> Check:
    training = settings.training
    if training.backend == "api":
        return Check(
            name=BASE_MODEL,
            status="skipped",
            message="training.backend = api: the provider holds the base model",
        )
    if training.base_model.startswith("s3://") and not s3_ok:
        return _not_asked(BASE_MODEL)[0]
    problem = base_model_problem(training.base_model, settings.cache_dir, settings.s3)
    if problem:
        return Check(name=BASE_MODEL, status="failed", message=problem)
    return Check(name=BASE_MODEL, status="ok", message=f"{training.base_model} is available")
