"""What every command group shares: the console, ``--arg`` parsing and TARGET resolution."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Optional

import typer
from rich.console import Console

from ..arithmetic.refusal import refusal_prefix
from ..models import MODELS
from ..registry import families, family

DEFAULT_OUT = 128  # a family's output channels when --out is not given


def _console() -> Console:
    """The console for tables: at a terminal, its width; written to a file or a pipe, wide enough that no column
    is cut ("118,01…")."""
    import sys

    return Console() if sys.stdout.isatty() else Console(width=400)


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


def resolve_target(target: str, in_channels: int, out_channels: Optional[int], kernel: int, dim: int,
                   kwargs: Optional[dict] = None):
    """TARGET -> (module, default input shape or None). Forms: a family name, ``torchvision:NAME``, a convzoo
    model (a builder of ``convzoo.models.MODELS``, the one list of them), or ``module.path:callable``.
    ``out_channels`` None (not given): a family is built C_in → DEFAULT_OUT, or C_in → C_in where its own channel
    rule refuses that (involution, partial conv keep the width), said on stderr as a note."""
    import importlib

    if target.startswith("torchvision:"):
        from ..models import torchvision_model

        return torchvision_model(target.split(":", 1)[1], **(kwargs or {})), (1, 3, 224, 224)
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
        if out_channels is not None:
            return fam.build(in_channels, out_channels, kernel_size, dim, **(kwargs or {})), (1, in_channels, *size)
        try:
            return fam.build(in_channels, DEFAULT_OUT, kernel_size, dim, **(kwargs or {})), (1, in_channels, *size)
        except ValueError as error:
            module = fam.build(in_channels, in_channels, kernel_size, dim, **(kwargs or {}))  # its error if not this
            typer.echo(f"note: built {target} {in_channels} → {in_channels} (--out {DEFAULT_OUT}: "
                       f"{str(error).splitlines()[0]}); give --out to choose", err=True)
            return module, (1, in_channels, *size)
    if target in MODELS:  # e.g. mobilenet_v1, called with its defaults and --arg's keywords
        model = call_builder(target, MODELS[target], kwargs or {})
        return model, getattr(model, "default_input_shape", (1, 3, 224, 224))
    names = ", ".join(f.name for f in families())
    raise ValueError(f"unknown target {target!r}: give a family ({names}), a convzoo model ({', '.join(MODELS)}), "
                     f"torchvision:NAME or module.path:callable")
