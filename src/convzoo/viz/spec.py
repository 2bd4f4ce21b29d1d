"""One layer to draw: a family, its parameters and the input size, validated and capped so a picture stays fast.

The parameters a family accepts are read from its layer's constructor signature (never from its name), so the
CLI and the web explorer offer exactly the arguments the real layer takes.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.parameter import UninitializedTensorMixin

from ..layers.form_choice import untimed
from ..registry import family as get_family

BUILD_SEED = 0  # the seed every drawn layer's parameters come from

# Integer arguments the pictures expose, when the family's layer constructor takes them (read from its signature).
OPTIONAL = ("stride", "padding", "dilation", "groups", "output_padding", "p", "num_kernels", "offset_groups",
            "scale_factor", "mid_channels", "temperature")
# Caps: (minimum, maximum) per argument; a request outside is rejected with a message, never clamped silently.
LIMITS = {"in_channels": (1, 16), "out_channels": (1, 16), "kernel": (1, 9), "dim": (1, 3), "size": (1, 48),
          "stride": (1, 4), "padding": (0, 8), "dilation": (1, 4), "groups": (1, 16), "output_padding": (0, 3),
          "p": (1, 16), "num_kernels": (1, 8), "offset_groups": (1, 16), "scale_factor": (1, 4),
          "mid_channels": (1, 16), "temperature": (1, 30)}
DEFAULT_SIZE = {1: 12, 2: 8, 3: 5}
# The kernel every caller passes when none was asked (the CLI, the explorer, the report): a family with no window to
# choose (``Family.window`` False) accepts it and refuses any other (an explicit 3 cannot be told from it here).
DEFAULT_KERNEL = 3
SIZE_CAP = {1: 48, 2: 24, 3: 8}


def limit(key: str, dim: int = 2) -> tuple[int, int]:
    """(minimum, maximum) of argument ``key``; the size cap depends on the number of spatial dims."""
    return (1, SIZE_CAP[dim]) if key == "size" else LIMITS[key]


def accepted(name: str) -> list[str]:
    """The optional geometry arguments that family ``name``'s layer constructor takes."""
    fam = get_family(name)
    module = fam.build(4, 4, 3 if fam.window else None, fam.dims[-1] if 2 not in fam.dims else 2)
    params = inspect.signature(type(module).__init__).parameters
    return [a for a in OPTIONAL if a in params]


@dataclass
class LayerSpec:
    """What to draw: a registered ``family`` with its channels, ``kernel`` size, ``dim`` and input ``size`` (None:
    the default for the dim), ``options`` passed to the layer; ``validate()`` checks them against the family."""

    family: str
    in_channels: int = 4
    out_channels: int = 4
    kernel: int = DEFAULT_KERNEL
    dim: int = 2
    size: int | None = None
    options: dict[str, int] = field(default_factory=dict)

    def validate(self) -> LayerSpec:
        fam = get_family(self.family)
        if self.dim not in fam.dims:
            raise ValueError(f"family {self.family!r} has no dim={self.dim} form; dims available: {fam.dims}")
        if self.size is None:
            self.size = DEFAULT_SIZE[self.dim]
        if not fam.window and self.kernel != DEFAULT_KERNEL:  # drawn with its own kernel, the one asked would be lost
            raise ValueError(f"family {self.family!r} takes no 'kernel' argument (kernel={self.kernel} given): it has "
                             "no window to choose, its layer sets its own kernel size; leave the kernel out")
        values = {"in_channels": self.in_channels, "out_channels": self.out_channels, "kernel": self.kernel,
                  "dim": self.dim, "size": self.size, **self.options}
        for key, value in values.items():
            if key not in LIMITS:
                raise ValueError(f"unknown parameter {key!r}; known: {', '.join(LIMITS)}")
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{key}={value!r} must be an integer")
            lo, hi = limit(key, self.dim)
            if key == "kernel":  # a family drawn with a larger kernel by default may be asked for it
                hi = max(hi, fam.picture_kernel or 0)
            if not lo <= value <= hi:
                where = f" for dim={self.dim}" if key == "size" else ""
                raise ValueError(f"{key}={value} is out of range{where}: must be between {lo} and {hi}")
        allowed = accepted(self.family)
        for key in self.options:
            if key not in allowed:
                raise ValueError(f"family {self.family!r} takes no {key!r} argument; it takes: "
                                 f"{', '.join(allowed) or 'none of ' + ', '.join(OPTIONAL)}")
        return self

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.in_channels, *(self.size or DEFAULT_SIZE[self.dim],) * self.dim)

    def build(self, device: str | None = None) -> nn.Module:
        """The real layer, its parameters drawn from a fixed seed (``BUILD_SEED``; the caller's random state is
        left as it was), so a picture is the same every time it is drawn; ``device='meta'`` builds it without
        memory (for shapes)."""
        extra: dict[str, Any] = {} if device is None else {"device": device}
        fam = get_family(self.family)
        with torch.random.fork_rng(devices=[]):
            self.validate()
            torch.manual_seed(BUILD_SEED)
            module = fam.build(self.in_channels, self.out_channels, self.kernel if fam.window else None, self.dim,
                               **dict(self.options), **extra)
            if device != "meta" and any(isinstance(t, UninitializedTensorMixin) for t in
                                        [*module.parameters(), *module.buffers()]):
                # a lazy layer (global depthwise: the kernel is the map) draws its parameters at its first forward:
                # here, from the seed, not from whatever random state the first drawing call finds
                with torch.no_grad(), untimed():
                    module(torch.zeros(1, *self.input_shape, **extra))
            return module

    def label(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.options.items())
        return (f"{self.family}: C_in={self.in_channels} → C_out={self.out_channels}, k={self.kernel}"
                + (f", {opts}" if opts else ""))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe(module: nn.Module) -> str:
    """The layer's geometry as read from its attributes (whatever it has), e.g. 'kernel_size=(3, 3), stride=(2, 2)'."""
    parts = []
    for attr in ("kernel_size", "kernel_sizes", "stride", "padding", "output_padding", "dilation", "groups", "p"):
        value = getattr(module, attr, None)
        if value is not None and not callable(value):
            parts.append(f"{attr}={value}")
    return ", ".join(parts) or type(module).__name__
