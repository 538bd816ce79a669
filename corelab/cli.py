"""The `corelab` command line: thin wrappers that call one library function each.

Heavy imports (torch, SimpleITK, dask) happen inside the commands so `corelab --help` is instant.
A `CorelabError` becomes exit code 2 and its one-sentence message on stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from corelab import __version__
from corelab.errors import CorelabError

app = typer.Typer(
    name="corelab",
    help="Automated follow-up infarct volumetry on head CT for stroke-trial core labs "
    "(three-CNN method of Sales Barros et al. 2020).",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"corelab {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """corelab: segment follow-up infarcts on NCCT and report agreement with manual reads."""


def fail(error: CorelabError) -> None:
    """Turn a corelab error into one clear sentence and exit code 2."""
    typer.secho(f"corelab: {error}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=2)
