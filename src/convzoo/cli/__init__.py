"""The ``convzoo`` command: one typer app joined from one module per command group."""

from __future__ import annotations

from typing import Optional

import typer
from typer.core import TyperGroup

from . import analysis, conversion, export, families, perf, train, viz


class _Guarded(TyperGroup):
    """The command group with a last guard: a file that cannot be read or written (a missing folder, no
    permission) ends in one line naming the path and exit code 2, never a traceback, whichever command met it."""

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except OSError as error:
            where = f" {error.filename!r}" if getattr(error, "filename", None) else ""
            typer.echo(f"error: cannot use{where}: {error.strerror or error}", err=True)
            ctx.exit(2)


app = typer.Typer(cls=_Guarded, help="Every convolution of modern CNNs as a verified PyTorch layer.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"convzoo {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                                 help="print the version and exit")) -> None:
    """Every convolution of modern CNNs as a verified PyTorch layer."""


for group in (families, analysis, conversion, export, perf, train, viz):
    app.add_typer(group.app)


def main() -> None:
    app()


__all__ = ["app", "main"]
