"""What every command group shares: the console, ``--arg`` parsing and TARGET resolution."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Optional

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from ..arithmetic.refusal import refusal_prefix
from ..models import MODELS
from ..registry import families, family

DEFAULT_OUT = 128  # a family's output channels when --out is not given

# --- tables that fit the terminal without cutting a number -----------------------------------------------------------

TEXT_MIN_WIDTH = 10  # a text column (names, types) folds down to this many characters, not fewer
# A number as the tables print it: sign, digits with thousands commas, decimals, exponent ("-1,234.5e-06").
_NUMBER = re.compile(r"[-+−]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
# What may stand beside numbers in a numeric cell: units and marks ("12% / 30%", "1.5×", "(1, 64, 56)", "—").
_NUMERIC_REST = re.compile(r"[\s%×x/()~<>≤≥±*!†,:;—–-]*")


def is_numeric(text: str) -> bool:
    """A cell that holds numbers and their marks only ("1,814,073,312", "2.9e-07", "12% / 30%", "—")."""
    text = text.strip()
    return bool(text) and (bool(_NUMBER.search(text)) or text in ("—", "-")) and \
        _NUMERIC_REST.fullmatch(_NUMBER.sub("", text)) is not None


@dataclass
class _ColumnFit:
    """A column's widths in cells, padding excluded: ``natural`` (every cell on one line) and ``minimum`` (a
    numeric column: its longest number and header word; a text column: ``TEXT_MIN_WIDTH`` or its longest numeric
    word, so folding never splits a number)."""

    natural: int
    minimum: int
    numeric: bool


def _plain(console: Console, cell: Any) -> str | None:
    """A cell's text as printed (markup resolved); None for a renderable that is not text."""
    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        return console.render_str(cell).plain
    return None


def _measure_column(console: Console, column: Any) -> _ColumnFit:
    cells = [_plain(console, c) for c in column._cells]
    texts = [c for c in cells if c is not None and c.strip()]
    header = _plain(console, column.header) or ""
    lengths = [Text(line).cell_len for c in texts for line in c.splitlines()]
    lengths += [Measurement.get(console, console.options, c).maximum for c, p in zip(column._cells, cells)
                if p is None]
    natural = max([Text(header).cell_len, *lengths, 1])
    header_word = max((Text(w).cell_len for w in header.split()), default=0)
    numeric = bool(texts) and all(is_numeric(c) for c in texts)
    if numeric:  # numbers: never narrower than the longest
        minimum = max([*lengths, header_word])
    else:  # names fold; a number inside (a shape, a count) stays whole
        numeric_words = [Text(w).cell_len for c in texts for w in c.split() if is_numeric(w)]
        minimum = max([min(natural, TEXT_MIN_WIDTH), *numeric_words, 1])
    return _ColumnFit(natural, minimum, numeric)


def _frame(table: Table, columns: int) -> int:
    """Cells a table of ``columns`` columns spends on borders and padding."""
    _, right, _, left = table.padding
    edge = 2 if table.box and table.show_edge else 0
    return columns * (left + right) + edge + (columns - 1 if table.box else 0)


def _assign_widths(table: Table, fits: list[_ColumnFit], width: int) -> None:
    """Fixed widths: every column its minimum, the room left given a cell at a time to the narrowest text column
    still short of its natural width (short names unfold whole, a long summary takes the rest: rich's own
    widest-first shrinking, run upwards), then likewise to numeric columns' headers; every column folds (a numeric
    one never needs to: its numbers fit)."""
    widths = [f.minimum for f in fits]
    room = width - _frame(table, len(fits)) - sum(widths)
    for pool in ([j for j, f in enumerate(fits) if not f.numeric], list(range(len(fits)))):
        while room > 0:
            short = [j for j in pool if widths[j] < fits[j].natural]
            if not short:
                break
            widths[min(short, key=widths.__getitem__)] += 1
            room -= 1
    for column, w in zip(table.columns, widths):
        column.width, column.no_wrap, column.overflow = w, False, "fold"


def _sub_table(table: Table, indices: list[int], first: bool, last: bool) -> Table:
    """The table with only the columns ``indices`` (the title on the first part, the caption on the last)."""
    part = copy.copy(table)
    part.columns = []
    for position, j in enumerate(indices):
        column = copy.copy(table.columns[j])
        column._index = position
        part.columns.append(column)
    part.title = table.title if first else None
    part.caption = table.caption if last else None
    return part


def fit_table(table: Table, console: Console, width: int | None = None) -> list[Table]:
    """The table as one or more tables that fit ``width`` (default: the console's) without cutting a number: text
    columns fold (down to ``TEXT_MIN_WIDTH``); numeric columns keep their longest number whole; where even that does
    not fit, the columns are stacked into several tables, each repeating the first (name) column. Rich alone
    shrinks every column evenly and cuts numbers with "…" ("1,814,073,3…")."""
    width = width or console.width
    if not table.columns:
        return [table]
    fits = [_measure_column(console, c) for c in table.columns]
    if _frame(table, len(fits)) + sum(f.natural for f in fits) <= width:
        return [table]
    if _frame(table, len(fits)) + sum(f.minimum for f in fits) <= width:
        _assign_widths(table, fits, width)
        return [table]
    key = [0] if not all(is_numeric(_plain(console, c) or "") for c in table.columns[0]._cells) else []
    groups: list[list[int]] = []
    for j in range(len(key), len(fits)):
        group = groups[-1] if groups else None
        if group is not None and _frame(table, len(group) + 1) + sum(fits[i].minimum for i in group + [j]) <= width:
            group.append(j)
        else:
            groups.append(key + [j])
    parts = [_sub_table(table, g, i == 0, i == len(groups) - 1) for i, g in enumerate(groups)]
    for part, group in zip(parts, groups):
        _assign_widths(part, [fits[i] for i in group], max(width, _frame(part, len(group))
                                                          + sum(fits[i].minimum for i in group)))
    return parts


class TableConsole(Console):
    """A rich Console whose ``print`` fits every Table to its width (``fit_table``): a number is never cut."""

    def print(self, *objects: Any, **kwargs: Any) -> None:  # type: ignore[override]
        parts = [part for o in objects for part in (fit_table(o, self) if isinstance(o, Table) else [o])]
        super().print(*parts, **kwargs)


def _console() -> TableConsole:
    """The console for tables: at a terminal, its width (tables fold names and stack columns rather than cut a
    number); written to a file or a pipe, wide enough that a table stays on one line each row."""
    return TableConsole() if Console().is_terminal else TableConsole(width=400)


console = _console()


def check_output_path(path: str, option: str) -> None:
    """An output file's folder must exist and be writable, and the path must not be a folder: checked before any
    long work starts, by opening the file for appending (a file that did not exist is removed again), since
    ``os.access`` says yes to root in folders such as /proc where nothing can be created. ValueError naming the
    option, the path and the rule."""
    import os

    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"{option} {path!r} is a folder; give a file name")
    if not os.path.isdir(folder):
        raise ValueError(f"{option} {path!r}: the folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"{option} {path!r}: the folder {folder!r} is not writable")
    existed = os.path.exists(path)
    try:
        with open(path, "ab"):
            pass
    except OSError as error:
        raise ValueError(f"{option} {path!r}: the file cannot be written there ({error.strerror or error})") from None
    if not existed:
        os.remove(path)


def check_seed(seed: int, option: str, high: int, why: str) -> int:
    """A seed must be an integer in [0, high] (``why``: whose range that is). ValueError naming the option."""
    if not 0 <= seed <= high:
        raise ValueError(f"{option} {seed} must be between 0 and {high:,} ({why})")
    return seed


def parse_shape(text: str, option: str = "--input") -> tuple[int, ...]:
    """``"1,3,224,224"`` → ``(1, 3, 224, 224)``: comma-separated non-negative integers (spaces allowed). ValueError
    naming the option, the value and the rule."""
    parts = [part.strip() for part in text.split(",")]
    for part in parts:
        if not part.lstrip("-").isdigit():
            raise ValueError(f"{option} {text!r}: {part!r} is not an integer; give comma-separated sizes such as "
                             f"1,3,224,224")
        if int(part) < 0:
            raise ValueError(f"{option} {text!r}: size {part} is negative; every size must be 0 or more")
    return tuple(int(part) for part in parts)


COST_DTYPES = ("float16", "bfloat16", "float32", "float64")  # what --dtype names: its element size sets the bytes


def parse_dtype(text: str, option: str = "--dtype"):  # type: ignore[no-untyped-def]
    """``"float16"`` → ``torch.float16``, one of ``COST_DTYPES``. ValueError naming the option, the value and the
    choices."""
    import torch

    if text not in COST_DTYPES:
        raise ValueError(f"{option} {text!r} is not one of {', '.join(COST_DTYPES)}")
    return getattr(torch, text)


def parse_depth(text: str, option: str = "--depth") -> int:
    """``"2"`` → 2: a whole number >= 0 (0: the model alone, 1: its children, …). ValueError naming the option,
    the value and the rule (typer's own int check would print a usage block, not one line)."""
    if not text.strip().isdigit():
        raise ValueError(f"{option} {text!r} must be a whole number >= 0 (0: the model alone, 1: its children, ...)")
    return int(text)


@contextmanager
def model_input_errors(target: str, shape: tuple[int, ...] | None, given: bool = True) -> Iterator[None]:
    """What a user's model raises on an input it refuses (AssertionError, torch's RuntimeError, a layer's refusal
    from ``cost``) becomes one ValueError naming the target and the input. Models check inputs with ``assert`` /
    ``torch._assert`` (ViT: "Wrong image height!"), so an AssertionError here is the model's verdict on the input,
    not a convzoo bug (convzoo never asserts on user input). ``given`` False: ``shape`` is the command's default
    (no --input): the message says so and how to give the model's own."""
    try:
        yield
    except Exception as error:
        text = str(error).strip()
        layer = shape is not None and text.startswith(refusal_prefix(shape))  # cost named the layer
        if not isinstance(error, (AssertionError, RuntimeError)) and not layer:
            raise
        reason = _first_line(error)[len(refusal_prefix(shape)) if layer else 0:]  # type: ignore[arg-type]
        where = f"the input {shape}" if given else f"the default input {shape}"
        hint = "" if given else ("; no --input was given: give the model's input shape with --input N,C,H,W "
                                 "(N,C,T,H,W for a video model, N,C,L for a sequence)")
        if isinstance(error, AssertionError):
            raise ValueError(f"{target} rejects {where}: {reason}{hint}") from None
        raise ValueError(f"{target} on {where.removeprefix('the ')}: {reason}{hint}") from None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def parse_args(pairs: Optional[list[str]]) -> dict:
    """``["width_mult=0.5", "conv='standard'"]`` → keyword arguments (values read as Python literals)."""
    import ast

    kwargs = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--arg {pair!r} must look like name=value")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value  # a bare word such as conv=standard
    return kwargs


TARGET_FORMS = (f"a family name, a convzoo model ({', '.join(MODELS)}), torchvision:NAME, or "
                "module.path:callable")


def call_builder(target: str, builder, kwargs: dict):  # type: ignore[no-untyped-def]
    """``builder(**kwargs)`` with the --arg keywords checked against its signature first: a keyword it does not
    take, or a required argument not given, is a TypeError naming the argument, the target and the builder's
    arguments (it was Python's "got an unexpected keyword argument" / "missing 1 required positional argument").
    A builder with ``**kwargs`` (a model passing keywords to its blocks) checks those itself."""
    import inspect

    try:
        parameters = inspect.signature(builder).parameters
    except (TypeError, ValueError):  # no signature to read (a builtin): its own error
        return builder(**kwargs)
    named = [n for n, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    more = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    listing = ", ".join(named) or "none"
    listing += " and keywords for its blocks" if more else ""
    for key, value in kwargs.items():
        if key not in named and not more:
            raise TypeError(f"--arg {key}={value!r}: {target} has no argument {key!r}; its arguments: {listing}")
    missing = [n for n in named if parameters[n].default is inspect.Parameter.empty and n not in kwargs]
    if missing:
        raise TypeError(f"{target} needs {', '.join(missing)}: give {' '.join(f'--arg {m}=VALUE' for m in missing)} "
                        f"(its arguments: {listing})")
    return builder(**kwargs)


SET_BY_OPTION = {"in_channels": "--in", "out_channels": "--out", "kernel_size": "--kernel", "dim": "--dim"}
_UNEXPECTED = re.compile(r"got an unexpected keyword argument '(\w+)'")
_TWICE = re.compile(r"got multiple values for (?:keyword )?argument '(\w+)'")


def keyword_arguments(cls: type) -> list[str]:
    """The keywords a class's constructor takes with a default (what ``--arg`` may set: the arguments without one,
    channels and kernel for a layer, block and layers for a ResNet, are what its builder passes)."""
    import inspect

    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return []
    return [n for n, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.default is not inspect.Parameter.empty]


@contextmanager
def keyword_errors(target: str, kwargs: dict, default: Any) -> Iterator[None]:
    """Python's "got an unexpected keyword argument 'foo'" / "got multiple values for argument 'x'" from building
    ``target`` with the --arg keywords becomes one TypeError naming --arg, the key and the arguments the built class
    takes (``default()`` builds it without them, to read its class)."""
    try:
        yield
    except TypeError as error:
        text = str(error)
        unexpected, twice = _UNEXPECTED.search(text), _TWICE.search(text)
        key = (unexpected or twice).group(1) if (unexpected or twice) else None
        if key not in kwargs:  # not about a keyword the user gave: the builder's own error
            raise
        try:
            cls = type(default())
        except Exception:  # noqa: BLE001 (no default build to read: list nothing)
            cls = None
        listing = ", ".join(n for n in keyword_arguments(cls) if n != key and n not in SET_BY_OPTION) if cls else ""
        what = f"{target} ({cls.__name__})" if cls else target
        rule = f"has no argument {key!r}" if unexpected else f"sets {key} itself"
        raise TypeError(f"--arg {key}={kwargs[key]!r}: {what} {rule}; its "
                        f"{'other ' if twice else ''}arguments: {listing or 'none to set'}") from None


def resolve_target(target: str, in_channels: int, out_channels: Optional[int], kernel: int, dim: int,
                   kwargs: Optional[dict] = None):
    """TARGET -> (module, default input shape or None). Forms: a family name, ``torchvision:NAME``, a convzoo
    model (a builder of ``convzoo.models.MODELS``, the one list of them), or ``module.path:callable``.
    ``out_channels`` None (not given): a family is built C_in → DEFAULT_OUT, or C_in → C_in where its own channel
    rule refuses that (involution, partial conv keep the width), said on stderr as a note."""
    import importlib

    if target.startswith("torchvision:"):
        from ..models import torchvision_model

        name = target.split(":", 1)[1]
        with keyword_errors(target, kwargs or {}, lambda: torchvision_model(name)):
            return torchvision_model(name, **(kwargs or {})), (1, 3, 224, 224)
    if ":" in target:
        path, _, attr = target.partition(":")
        try:
            factory = getattr(importlib.import_module(path), attr)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"cannot import {target!r}: {error}") from None
        return call_builder(target, factory, kwargs or {}), None
    try:
        fam = family(target)
    except ValueError:
        fam = None
    if fam is not None:
        size = (56,) * dim
        kernel_size = kernel if fam.window else None  # pointwise and GDC have no window to choose
        kwargs = kwargs or {}
        for key, value in kwargs.items():
            if key in SET_BY_OPTION:
                raise TypeError(f"--arg {key}={value!r}: a family's {key} comes from {SET_BY_OPTION[key]}; give "
                                f"{SET_BY_OPTION[key]} {value} instead")

        def default() -> Any:  # the layer as built without --arg: its class lists the arguments
            try:
                return fam.build(in_channels, out_channels or DEFAULT_OUT, kernel_size, dim)
            except ValueError:
                return fam.build(in_channels, in_channels, kernel_size, dim)

        with keyword_errors(target, kwargs, default):
            if out_channels is not None:
                return fam.build(in_channels, out_channels, kernel_size, dim, **kwargs), (1, in_channels, *size)
            try:
                return fam.build(in_channels, DEFAULT_OUT, kernel_size, dim, **kwargs), (1, in_channels, *size)
            except ValueError as error:
                module = fam.build(in_channels, in_channels, kernel_size, dim, **kwargs)  # its error if not this
                typer.echo(f"note: built {target} {in_channels} → {in_channels} (--out {DEFAULT_OUT}: "
                           f"{str(error).splitlines()[0]}); give --out to choose", err=True)
                return module, (1, in_channels, *size)
    if target in MODELS:  # e.g. mobilenet_v1, called with its defaults and --arg's keywords
        model = call_builder(target, MODELS[target], kwargs or {})
        return model, getattr(model, "default_input_shape", (1, 3, 224, 224))
    names = ", ".join(f.name for f in families())
    raise ValueError(f"unknown target {target!r}: give a family ({names}), a convzoo model ({', '.join(MODELS)}), "
                     f"torchvision:NAME or module.path:callable")
