"""``convzoo list`` and ``convzoo verify``."""

from __future__ import annotations

from typing import Optional

import typer

from rich.table import Table

from ..registry import families, family
from .common import check_seed, console

app = typer.Typer()


@app.command("list")
@app.command("families", hidden=True)  # the table's own title: typed as a command, it is the same list
def list_families(
    as_json: bool = typer.Option(False, "--json", help="print the families as a JSON list (name, title, summary, "
                                                       "dims, article, window, replaces_kxk)"),
) -> None:
    """Show every convolution family: name, what it is, dims, where the seed articles describe it."""
    if as_json:
        import json

        typer.echo(json.dumps([{"name": f.name, "title": f.title, "summary": f.summary, "dims": list(f.dims),
                                "article": f.article, "window": f.window, "replaces_kxk": f.replaces_kxk}
                               for f in families()], ensure_ascii=False))
        return
    table = Table(title="convzoo families")
    for column in ("name", "title", "dims", "article", "summary"):
        table.add_column(column, overflow="fold", no_wrap=column == "name")
    for f in families():
        table.add_row(f.name, f.title, ",".join(map(str, f.dims)), f.article, f.summary)
    console.print(table)


@app.command()
def verify(
    names: Optional[list[str]] = typer.Argument(None, help="families to check (default: all)"),
    seed: int = typer.Option(0, help="random seed for inputs and parameters"),
) -> None:
    """Compare every family with its NumPy reference on random inputs (fp32 vs fp64); exit 1 if any fails."""
    from ..verify import TOLERANCE, verify_family

    try:
        check_seed(seed, "--seed", 2**64 - 1, "torch.Generator's range")
        chosen = [family(n) for n in names] if names else families()
    except ValueError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    table = Table(title=f"convzoo verify — max relative error vs reference.py (pass < {TOLERANCE:g})")
    for column in ("family", "dim", "input", "output", "rel. error", "result"):
        table.add_column(column, no_wrap=column == "family")
    failures = 0
    for f in chosen:
        for dim in f.dims:
            result = verify_family(f.name, dim=dim, size=9 if dim < 3 else 5, seed=seed)
            failures += not result.passed
            verdict = "[green]pass[/green]" if result.passed else "[red]FAIL[/red]"
            table.add_row(f.name, str(dim), str(result.input_shape), str(result.output_shape),
                          f"{result.rel_error:.2e}", verdict)
    console.print(table)
    if failures:
        console.print(f"[red]{failures} check(s) failed[/red]")
        raise typer.Exit(1)
    console.print("[green]every family matches its reference[/green]")
