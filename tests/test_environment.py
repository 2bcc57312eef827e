"""Start-up checks against the real moto S3 server and a real Prefect API: each broken piece of
the environment fails in seconds with the setting or command that fixes it, secrets unprinted."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from typer.testing import CliRunner

from flows.cli.app import app
from tasks.environment import (
    BASE_MODEL,
    BUCKET,
    CREDENTIALS,
    ENDPOINT,
    PREFECT_API,
    EnvironmentNotReady,
    check_environment,
)
from tasks.storage.local_server import free_port
from tasks.storage.s3 import list_objects, s3_client, upload_dir
from tests.helpers.aws import no_aws_credentials
from tests.helpers.flow_runs import run_monitor, run_retrain

SECRET = "wJalrXUtnFEMI-not-a-real-secret-7f3a"


def by_name(report) -> dict[str, tuple[str, str]]:
    return {check.name: (check.status, check.message) for check in report.checks}


def with_base_model(settings, base_model: str):
    return settings.model_copy(
        update={"training": settings.training.model_copy(update={"base_model": base_model})}
    )


def with_s3(settings, **update):
    return settings.model_copy(update={"s3": settings.s3.model_copy(update=update)})


def use_settings_env(monkeypatch, settings) -> None:
    """The CLI reads its settings from RETRAIN_* variables, as a user's shell would set them."""
    monkeypatch.setenv("RETRAIN_S3__BUCKET", settings.s3.bucket)
    monkeypatch.setenv("RETRAIN_S3__ENDPOINT_URL", settings.s3.endpoint_url)
    monkeypatch.setenv("RETRAIN_CACHE_DIR", str(settings.cache_dir))
    monkeypatch.setenv("RETRAIN_TRAINING__BASE_MODEL", settings.training.base_model)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A port that accepts connections and never answers: a hung endpoint."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


@pytest.fixture
def moto_auth(settings, s3_endpoint: str) -> Iterator[None]:
    """Switch on moto's credential checking (its /moto-api/reset-auth) once the test's bucket
    exists; restore it afterwards."""
    answer = httpx.post(f"{s3_endpoint}/moto-api/reset-auth", content=b"0").json()
    try:
        yield
    finally:
        previous = answer["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"].encode()
        httpx.post(f"{s3_endpoint}/moto-api/reset-auth", content=previous)


@pytest.mark.usefixtures("prefect_api")
def test_a_ready_environment_passes_every_check(settings, tiny_model_dir, monkeypatch):
    ready = with_base_model(settings, str(tiny_model_dir))

    checks = by_name(check_environment(ready))

    assert {name: status for name, (status, _) in checks.items()} == {
        CREDENTIALS: "ok",
        ENDPOINT: "ok",
        BUCKET: "ok",
        PREFECT_API: "ok",
        BASE_MODEL: "ok",
    }
    assert checks[CREDENTIALS][1] == "found (env)"  # where they came from, not what they are
    use_settings_env(monkeypatch, ready)
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "ready to run" in result.output


def test_no_credentials_fail_before_a_run_starts_and_name_the_fix(
    settings, tmp_path, monkeypatch, prefect_api
):
    no_aws_credentials(monkeypatch, tmp_path)
    use_settings_env(monkeypatch, settings)

    checks = by_name(check_environment(settings))
    assert checks[CREDENTIALS][0] == "failed"
    assert "AWS_ACCESS_KEY_ID" in checks[CREDENTIALS][1]
    assert "retrain demo" in checks[CREDENTIALS][1]
    assert checks[ENDPOINT][0] == checks[BUCKET][0] == "skipped"

    with get_client(sync_client=True) as client:
        runs_before = client.count_flow_runs()
    result = CliRunner().invoke(app, ["run"])
    assert result.exit_code == 1
    assert "no AWS credentials found" in result.output and "NoCredentialsError" not in result.output
    with get_client(sync_client=True) as client:
        assert client.count_flow_runs() == runs_before  # refused before any flow run started


def test_half_set_credentials_name_the_missing_variable_not_the_value(
    settings, tmp_path, monkeypatch
):
    no_aws_credentials(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SECRET)

    status, message = by_name(check_environment(settings))[CREDENTIALS]

    assert status == "failed"
    assert "AWS_SECRET_ACCESS_KEY" in message and SECRET not in message


@pytest.mark.usefixtures("moto_auth")
def test_credentials_the_endpoint_rejects_fail_without_printing_them(settings, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEUNKNOWN01")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    use_settings_env(monkeypatch, settings)

    result = CliRunner().invoke(app, ["doctor", "--json"])

    assert result.exit_code == 1
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks[CREDENTIALS]["status"] == "failed"
    assert "InvalidAccessKeyId" in checks[CREDENTIALS]["message"]
    assert checks[ENDPOINT]["status"] == "ok"  # it answered: the endpoint is not the problem
    assert SECRET not in result.output and "AKIAEXAMPLEUNKNOWN01" not in result.output


def test_an_unreachable_endpoint_fails_in_seconds(settings):
    closed = with_s3(settings, endpoint_url=f"http://127.0.0.1:{free_port()}")

    started = time.perf_counter()
    checks = by_name(check_environment(closed))

    assert time.perf_counter() - started < 5
    status, message = checks[ENDPOINT]
    assert status == "failed" and "EndpointConnectionError" in message
    assert "RETRAIN_S3__ENDPOINT_URL" in message and "retrain demo" in message
    assert checks[BUCKET][0] == "skipped"


def test_hung_s3_and_prefect_endpoints_cost_one_short_timeout_together(settings, silent_server):
    hung = with_s3(settings, endpoint_url=silent_server.replace("://", "://admin:s3cr3t@"))

    started = time.perf_counter()
    with temporary_settings({PREFECT_API_URL: f"{silent_server}/api"}):
        report = check_environment(hung)
    elapsed = time.perf_counter() - started

    assert elapsed < 5, f"took {elapsed:.1f} s"
    checks = by_name(report)
    assert checks[ENDPOINT][0] == "failed" and "ReadTimeoutError" in checks[ENDPOINT][1]
    assert checks[PREFECT_API][0] == "failed"
    assert "s3cr3t" not in report.model_dump_json()  # the URL's password is dropped


def test_a_missing_bucket_names_the_setting_and_how_to_create_it(settings, monkeypatch):
    missing = with_s3(settings, bucket="no-such-support-bucket")
    use_settings_env(monkeypatch, missing)

    result = CliRunner().invoke(app, ["doctor", "--json"])

    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    checks = {c["name"]: c for c in report["checks"]}
    assert checks[ENDPOINT]["status"] == "ok" and checks[CREDENTIALS]["status"] == "ok"
    assert checks[BUCKET]["status"] == "failed"
    message = checks[BUCKET]["message"]
    assert "RETRAIN_S3__BUCKET" in message and "aws s3 mb s3://no-such-support-bucket" in message


def test_an_unreachable_prefect_api_names_the_fix(settings):
    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api"}):
        started = time.perf_counter()
        status, message = by_name(check_environment(settings))[PREFECT_API]

    assert time.perf_counter() - started < 5
    assert status == "failed"
    assert "PREFECT_API_URL" in message and "prefect server start" in message


def test_a_missing_or_unsafe_base_model_is_named(settings, tmp_path, tiny_model_dir):
    nowhere = by_name(check_environment(with_base_model(settings, str(tmp_path / "nowhere"))))
    assert nowhere[BASE_MODEL][0] == "failed"
    assert "RETRAIN_TRAINING__BASE_MODEL" in nowhere[BASE_MODEL][1]

    pickled = tmp_path / "pickled-model"  # a model saved as pytorch_model.bin only
    pickled.mkdir()
    (pickled / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")
    unsafe = by_name(check_environment(with_base_model(settings, str(pickled))))
    assert unsafe[BASE_MODEL][0] == "failed" and "safetensors" in unsafe[BASE_MODEL][1]

    hosted = settings.model_copy(
        update={"training": settings.training.model_copy(update={"backend": "api"})}
    )
    assert by_name(check_environment(hosted))[BASE_MODEL][0] == "skipped"


def test_a_base_model_in_s3_is_checked_by_listing_it(settings, tmp_path, tiny_model_dir):
    client, bucket = s3_client(settings.s3), settings.s3.bucket
    upload_dir(client, tiny_model_dir, bucket, "base-models/tiny/")
    ready = by_name(check_environment(with_base_model(settings, f"s3://{bucket}/base-models/tiny")))
    assert ready[BASE_MODEL][0] == "ok"

    empty = by_name(check_environment(with_base_model(settings, f"s3://{bucket}/base-models/x/")))
    assert empty[BASE_MODEL][0] == "failed"
    assert "config.json" in empty[BASE_MODEL][1] and "aws s3 sync" in empty[BASE_MODEL][1]

    client.put_object(Bucket=bucket, Key="base-models/pickled/config.json", Body=b"{}")
    client.put_object(Bucket=bucket, Key="base-models/pickled/pytorch_model.bin", Body=b"x")
    pickled = with_base_model(settings, f"s3://{bucket}/base-models/pickled")
    assert "pickled files" in by_name(check_environment(pickled))[BASE_MODEL][1]

    # through a bucket that does not answer, the model is not asked about
    unreachable = with_s3(pickled, endpoint_url=f"http://127.0.0.1:{free_port()}")
    assert by_name(check_environment(unreachable))[BASE_MODEL][0] == "skipped"


@pytest.mark.usefixtures("prefect_api")
def test_the_flows_check_first_and_touch_nothing(settings, tmp_path):
    with pytest.raises(EnvironmentNotReady, match="RETRAIN_S3__BUCKET"):
        run_retrain(with_s3(settings, bucket="no-such-retrain-bucket"))

    no_model = with_base_model(settings, str(tmp_path / "nowhere"))
    with pytest.raises(EnvironmentNotReady, match=r"training\.base_model"):
        run_monitor(no_model)
    assert list(list_objects(s3_client(settings.s3), settings.s3.bucket, "")) == []
