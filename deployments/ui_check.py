"""`make ui-check`: one retrain run, looked at the way a person looks at it, in the Prefect UI.

Starts a Prefect server (SQLite in a temporary PREFECT_HOME) and moto S3 on free loopback ports,
seeds two days of sample logs, runs `retrain run` to completion on a tiny budget (the packaged
SmolLM2, 2 training steps, a 16-example golden set), then opens the run's page, its Artifacts tab
and every artifact in headless Chromium (Debian's `chromium`, driven by Playwright) and saves
full-page screenshots. Nothing here downloads a browser: `make ui-check` installs Debian's
package when /usr/bin/chromium is missing (never `playwright install`).

    python deployments/ui_check.py [--out build/ui-check] [--chromium /usr/bin/chromium]

Then look at the PNGs; docs/ keeps the ones of the final state (see the README).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from local_stack import wait_for

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# without the background-networking flags Chromium keeps calling Google services, which a
# closed network refuses; --no-sandbox because CI containers run as root
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# a run that reads well and finishes in a minute or two on 2 CPU cores
DOCS_SHOTS = ("run-artifacts", "artifact-retrain-summary", "artifact-retrain-decision")
TINY_BUDGET = {
    "RETRAIN_TRAINING__MAX_STEPS": "2",
    "RETRAIN_TRAINING__BATCH_SIZE": "4",
    "RETRAIN_TRAINING__MAX_LENGTH": "96",
    "RETRAIN_DATASET__GOLDEN_FRACTION": "0.1",  # two days of logs are enough to freeze one
    "RETRAIN_DATASET__GOLDEN_MIN_EXAMPLES": "8",
    "RETRAIN_DATASET__GOLDEN_MAX_EXAMPLES": "16",
    "RETRAIN_EVALUATION__MAX_NEW_TOKENS": "16",
    "RETRAIN_EVALUATION__SAMPLE_SIZE": "3",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def local_stack(home: Path) -> Iterator[dict[str, str]]:
    """moto S3 and a Prefect server, stopped (by their process ids) when the block ends."""
    s3_port, prefect_port = _free_port(), _free_port()
    env = {
        **os.environ,
        **TINY_BUDGET,
        "PYTHONPATH": str(ROOT),
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "RETRAIN_CONFIG_FILE": str(home / "no-retrain.toml"),  # the defaults, not a user's file
        "RETRAIN_S3__ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
        "RETRAIN_S3__BUCKET": "ui-check",
        "AWS_ACCESS_KEY_ID": "ui-check",  # moto accepts any; boto3 needs some to sign
        "AWS_SECRET_ACCESS_KEY": "ui-check",
    }
    logs = (home / "servers.log").open("ab")
    servers = [
        subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)],
            env=env,
            stdout=logs,
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [
                str(BIN / "prefect"),
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(prefect_port),
            ],
            env=env,
            stdout=logs,
            stderr=subprocess.STDOUT,
        ),
    ]
    try:
        wait_for(f"{env['RETRAIN_S3__ENDPOINT_URL']}/moto-api/", "moto S3", 60, home)
        wait_for(f"{env['PREFECT_API_URL']}/health", "the Prefect server", 180, home)
        yield env
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()


def _retrain(env: dict[str, str], *args: str) -> str:
    command = [sys.executable, "-c", "from flows.cli.app import app; app()", *args]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"retrain {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return done.stdout


def run_once(env: dict[str, str]) -> dict:
    """Seed two days of sample logs and run one retrain to completion; its summary."""
    _retrain(env, "seed", "--days", "2", "--limit", "400", "--bad-records", "3")
    return json.loads(_retrain(env, "run", "--json"))


# elements the reader has to scroll sideways in (the UI does not wrap table cells)
SIDEWAYS_SCROLL_JS = """() => [...document.querySelectorAll('*')]
    .filter(e => e.scrollWidth > e.clientWidth + 1
                 && ['auto', 'scroll'].includes(getComputedStyle(e).overflowX))
    .map(e => `${e.className || e.tagName} ${e.scrollWidth} px in ${e.clientWidth} px`)"""


def screenshots(
    ui: str, run_id: str, artifacts: dict[str, str], out: Path, chromium: str
) -> dict[str, list[str]]:
    """The run page, its Artifacts tab and each artifact's page, as full-page PNGs; returns,
    per artifact, what needs a horizontal scroll at a 1440 px wide window."""
    from playwright.sync_api import sync_playwright

    sideways = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(f"{ui}/runs/flow-run/{run_id}", wait_until="networkidle")
        page.get_by_text("Completed").first.wait_for()
        page.screenshot(path=out / "run.png", full_page=True)
        page.get_by_text("Artifacts", exact=True).first.click()  # the run page's tab
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(1500)
        page.screenshot(path=out / "run-artifacts.png", full_page=True)
        # the UI scrolls inside its own pane, so a full-page shot is one viewport: a tall one
        page.set_viewport_size({"width": 1440, "height": 2000})
        for key, artifact_id in artifacts.items():
            page.goto(f"{ui}/artifacts/artifact/{artifact_id}", wait_until="networkidle")
            page.get_by_text(key).first.wait_for()
            page.wait_for_timeout(500)  # markdown and tables render after the data arrives
            page.screenshot(path=out / f"artifact-{key}.png", full_page=True)
            if scrolls := page.evaluate(SIDEWAYS_SCROLL_JS):
                sideways[key] = scrolls
        browser.close()
    return sideways


def keep_in_docs(shots: Path, docs: Path) -> list[Path]:
    """The screenshots the README shows, cropped to their content and quantised (small PNGs)."""
    from PIL import Image, ImageChops

    kept = []
    docs.mkdir(exist_ok=True)
    for name in DOCS_SHOTS:
        image = Image.open(shots / f"{name}.png").convert("RGB")
        # crop the empty bottom of a tall viewport: below the last line of the main column
        # (x 270-1150 px; the sidebar's links sit at the bottom of any viewport)
        column = image.crop((270, 0, 1150, image.height))
        background = Image.new("RGB", column.size, column.getpixel((column.width - 1, 0)))
        ink = ImageChops.difference(column, background).convert("L").point(lambda v: v > 24 and 255)
        if box := ink.getbbox():
            image = image.crop((0, 0, image.width, min(image.height, box[3] + 24)))
        target = docs / f"ui-{name}.png"
        image.quantize(colors=64).save(target, optimize=True)
        kept.append(target)
    return kept


def artifact_ids(env: dict[str, str], run_id: str) -> dict[str, str]:
    """Key → id of the run's artifacts, read through the API the UI uses."""
    request = urllib.request.Request(
        f"{env['PREFECT_API_URL']}/artifacts/filter",
        data=json.dumps({"artifacts": {"flow_run_id": {"any_": [run_id]}}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return {a["key"]: a["id"] for a in json.load(response) if a["key"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "ui-check")
    parser.add_argument("--docs", action="store_true", help="Also refresh docs/ui-*.png.")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    if not Path(args.chromium).exists():
        raise SystemExit(f"no Chromium at {args.chromium}: `sudo apt-get install -y chromium`")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ui-check-") as home, local_stack(Path(home)) as env:
        summary = run_once(env)
        print(
            f"run {summary['run_id']}: {summary['decision']} in {time.monotonic() - started:.0f} s"
        )
        artifacts = artifact_ids(env, summary["run_id"])
        ui = env["PREFECT_API_URL"].removesuffix("/api")
        sideways = screenshots(ui, summary["run_id"], artifacts, args.out, args.chromium)
    shots = sorted(p.name for p in args.out.glob("*.png"))
    print(f"{len(shots)} screenshots in {args.out}: {', '.join(shots)}")
    for key, scrolls in sideways.items():
        print(f"needs a horizontal scroll at 1440 px: {key}: {'; '.join(scrolls)}")
    if args.docs:
        for path in keep_in_docs(args.out, ROOT / "docs"):
            print(f"kept {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
