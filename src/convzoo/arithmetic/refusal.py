"""One wording for "this input shape cannot run through the model": the tools that run a model on a shape
(``receptive_field``, ``cost``) name the layer that refused it and that layer's own error, so that a user sees which
layer to look at ("layer 'features.0.0' (Conv2d) raised RuntimeError: ... expected input[1, 1, 224, 224] to have 3
channels") instead of a bare sentence from a meta kernel ("Invalid channel dimensions")."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def refusal_prefix(input_shape: Sequence[int]) -> str:
    """The start of every refusal's message (the CLI, which names the input itself, drops it)."""
    return f"input_shape={tuple(input_shape)} cannot run through the model: "


def layer_where(name: str, module: nn.Module, layer_input: Sequence[int] | None = None) -> str:
    """``layer 'name' (Type)``, and the shape the layer was given when that is not the model's input."""
    on = "" if layer_input is None else f" on its input {tuple(layer_input)}"
    return f"layer '{name}' ({type(module).__name__}){on}"


def refusal(input_shape: Sequence[int], where: str, error: BaseException,
            kind: type[Exception] = ValueError) -> Exception:
    """The error for an input shape that a layer (``where``: ``layer_where``'s words, or an op) refuses or fails on:
    ``kind`` (ValueError: a wrong input; ``cost`` keeps the layer's own error type, so that callers catching torch's
    RuntimeError still do), with the layer's message."""
    message = f"{refusal_prefix(input_shape)}{where} raised {type(error).__name__}: {error}"
    try:
        return kind(message)
    except Exception:  # noqa: BLE001 - an exception type that wants other arguments: the wrong-input type
        return ValueError(message)
