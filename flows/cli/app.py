"""The `retrain` command: every command in one table, each in its own module of flows/cli/.

retrain demo                    # local moto S3 + ephemeral Prefect + packaged SmolLM2
retrain seed --days 7           # upload the bundled Bitext sample to the configured bucket
retrain run --json              # one run against the configured S3 and Prefect API
"""

from __future__ import annotations

import typer

from flows.cli import (
    check_data,
    demo,
    doctor,
    drift,
    evaluate,
    events,
    monitor,
    preflight,
    registry,
    run,
    seed,
)

COMMANDS = {
    "demo": demo.demo,
    "seed": seed.seed,
    "run": run.run,
    "evaluate": evaluate.evaluate,
    "check-data": check_data.check_data,
    "preflight": preflight.preflight,
    "drift": drift.drift,
    "monitor": monitor.monitor,
    "doctor": doctor.doctor,
}
GROUPS = {"registry": registry.app, "events": events.app}

app = typer.Typer(help=__doc__.split("\n\n")[0], no_args_is_help=True, add_completion=False)
for name, command in COMMANDS.items():
    app.command(name)(command)
for name, group in GROUPS.items():
    app.add_typer(group, name=name)
