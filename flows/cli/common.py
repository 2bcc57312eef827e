"""What the `retrain` commands share: the --json option, loading settings, failing clearly."""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError

from tasks.config import Settings, apply_runtime_env

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def load_settings(exit_code: int = 1) -> Settings:
    """The runtime environment applied and the settings loaded; a bad RETRAIN_* variable or
    retrain.toml value exits with `exit_code` and says which."""
    apply_runtime_env()
    try:
        return Settings()
    except ValidationError as error:
        typer.secho(f"settings are invalid: {error}", err=True, fg="red")
        raise typer.Exit(exit_code) from error


def fail(error: Exception) -> typer.Exit:
    """Print `error` in red on stderr; the exit to raise."""
    typer.secho(f"{type(error).__name__}: {error}", err=True, fg="red")
    return typer.Exit(1)
