"""One layer to draw: a family, its parameters and the input size, validated and capped so a picture stays fast.

The parameters a family accepts are read from its layer's constructor signature (never from its name), so the
CLI and the web explorer offer exactly the arguments the real layer takes.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from ..registry import family as get_family

# Geometry arguments the pictures expose, when the family's layer accepts them.
OPTIONAL = ("stride", "padding", "dilation", "groups", "output_padding", "p")
# Caps: (minimum, maximum) per argument; a request outside is rejected with a message, never clamped silently.
LIMITS = {"in_channels": (1, 16), "out_channels": (1, 16), "kernel": (1, 9), "dim": (1, 3), "size": (1, 24),
          "stride": (1, 4), "padding": (0, 8), "dilation": (1, 4), "groups": (1, 16), "output_padding": (0, 3),
          "p": (1, 16)}
DEFAULT_SIZE = {1: 12, 2: 8, 3: 5}
SIZE_CAP = {1: 48, 2: 24, 3: 8}


def accepted(name: str) -> list[str]:
    """The optional geometry arguments that family ``name``'s layer constructor takes."""
    fam = get_family(name)
    module = fam.build(4, 4, 3 if fam.window else None, fam.dims[-1] if 2 not in fam.dims else 2)
    params = inspect.signature(type(module).__init__).parameters
    return [a for a in OPTIONAL if a in params]


@dataclass
class LayerSpec:
    family: str
    in_channels: int = 4
    out_channels: int = 4
    kernel: int = 3
    dim: int = 2
    size: int | None = None
    options: dict[str, int] = field(default_factory=dict)

    def validate(self) -> LayerSpec:
        fam = get_family(self.family)
        if self.dim not in fam.dims:
            raise ValueError(f"family {self.family!r} has no dim={self.dim} form; dims available: {fam.dims}")
        if self.size is None:
            self.size = DEFAULT_SIZE[self.dim]
        values = {"in_channels": self.in_channels, "out_channels": self.out_channels, "kernel": self.kernel,
                  "dim": self.dim, "size": self.size, **self.options}
        for key, value in values.items():
            if key not in LIMITS:
                raise ValueError(f"unknown parameter {key!r}; known: {', '.join(LIMITS)}")
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{key}={value!r} must be an integer")
            lo, hi = LIMITS[key]
            if not lo <= value <= hi:
                raise ValueError(f"{key}={value} is out of range: must be between {lo} and {hi}")
        if self.size > SIZE_CAP[self.dim]:
            raise ValueError(f"size={self.size} is out of range for dim={self.dim}: must be at most {SIZE_CAP[self.dim]}")
        allowed = accepted(self.family)
        for key in self.options:
            if key not in allowed:
                raise ValueError(f"family {self.family!r} takes no {key!r} argument; it takes: "
                                 f"{', '.join(allowed) or 'none of ' + ', '.join(OPTIONAL)}")
        return self

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.in_channels, *(self.size or DEFAULT_SIZE[self.dim],) * self.dim)

    def build(self) -> nn.Module:
        self.validate()
        fam = get_family(self.family)
        return fam.build(self.in_channels, self.out_channels, self.kernel if fam.window else None, self.dim,
                         **dict(self.options))

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
