"""Structural re-parameterisation: a block of parallel conv → BatchNorm branches (and optionally a BatchNorm
identity) whose sum is, at inference, exactly ONE convolution.

Shared by ACNet (Ding et al. 2019, https://arxiv.org/abs/1908.03930), RepVGG (Ding et al. 2021,
https://arxiv.org/abs/2101.03697) and RepLKNet (Ding et al. 2022, https://arxiv.org/abs/2203.06717). Every branch
kernel k_b sits inside the block's largest kernel K at offset o = (K − k_b) // 2 (centred for odd sizes): branch b
reads the block's padded input cropped by d·o before and d·(K − k_b − o) after, so all branches give the same output
size. Where the block's padding p covers that, the branch pads p − d·o itself; where it does not (p = 0, 'valid'), it
slices the input instead (ACNet's crop layer), so any padding works. With eval-mode BN
y_b = t_b · (W_b ⋆ x) + (β_b − μ_b t_b), t_b = γ_b / √(σ²_b + ε), the block equals one conv with kernel
Σ_b t_b · embed_K(W_b) (+ t_id · embed_K(I)) and bias Σ_b (β_b − μ_b t_b): ``fused_conv()`` builds it, and
``convzoo.reparameterize`` swaps every block that has ``fused_conv`` for its result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ..arithmetic.cost import LayerCost, compose, elementwise_cost, module_cost
from ..functional import pad_pairs
from ..geometry import (
    PADDING_MODES,
    Padding,
    PaddingPairs,
    check_choice,
    check_groups,
    check_window_fits,
    resolve_geometry,
)
from .base import Alternative, ConvzooLayer, Runner, Stage, geometry_repr, input_checked, planned_forward
from .conv import Conv1d, Conv2d, Conv3d, ConvNd, grouped_projection, native_conv_call, to_numpy

if TYPE_CHECKING:
    import numpy as np

_CONVS: dict[int, type[ConvNd]] = {1: Conv1d, 2: Conv2d, 3: Conv3d}
_NORMS: dict[int, type[nn.Module]] = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def centred_padding(kernel: tuple[int, ...], dilation: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """The padding that centres a K window on every input position: d·(K − 1) in total, the odd element after."""
    totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
    return tuple((t // 2, t - t // 2) for t in totals)


def branch_padding(pairs: PaddingPairs, kernel: tuple[int, ...], branch: tuple[int, ...],
                   dilation: tuple[int, ...], name: str) -> PaddingPairs:
    """A branch's own signed (before, after) padding: the block's, less d·o before and d·(K − k_b − o) after,
    o = (K − k_b) // 2. A negative side is a crop: the branch's window starts inside the input there."""
    out = []
    for (lo, hi), big, small, d in zip(pairs, kernel, branch, dilation):
        if small > big:
            raise ValueError(f"the {name} branch's kernel {branch} must fit inside kernel_size={kernel}")
        before = (big - small) // 2
        out.append((lo - d * before, hi - d * (big - small - before)))
    return tuple(out)


def split_window(signed: PaddingPairs, padding_mode: str) -> tuple[PaddingPairs, PaddingPairs, PaddingPairs]:
    """(conv padding, padding applied before the crop, crop) realising a branch's signed padding, all ≥ 0.

    The exact branch input is crop(pad_mode(x, block padding)); per side that is a pad or a crop. Zero padding
    commutes with slicing the other side, so the conv pads. A torch mode reads x's far edge (circular wraps the
    start to the end), so in a dim that crops one side and pads the other the pad goes first, on the uncropped x.
    """
    conv, first, crop = [], [], []
    for lo, hi in signed:
        cut, grow = (max(-lo, 0), max(-hi, 0)), (max(lo, 0), max(hi, 0))
        mixed = padding_mode != "zeros" and any(cut) and any(grow)
        conv.append((0, 0) if mixed else grow)
        first.append(grow if mixed else (0, 0))
        crop.append(cut)
    return tuple(conv), tuple(first), tuple(crop)


class ConvBN(nn.Module):
    """One branch: (pad, then) crop the input to the branch's window, a conv (bias-free by default), then BatchNorm.

    ``pad_first`` / ``crop``: (before, after) per spatial dim (``split_window``); zeros mean none. The crop is a view
    (a slice), so the conv reads the input's memory.
    """

    def __init__(self, conv: ConvNd, norm: nn.Module, pad_first: PaddingPairs | None = None,
                 crop: PaddingPairs | None = None, padding_mode: str = "zeros") -> None:
        super().__init__()
        self.conv, self.bn = conv, norm
        self.pad_first = pad_first if pad_first is not None and any(v for p in pad_first for v in p) else None
        self.crop = crop if crop is not None and any(v for p in crop for v in p) else None
        self.padding_mode = padding_mode
        self._slices = None if self.crop is None else (  # the last dims: batched or unbatched input alike
            Ellipsis, *(slice(lo, -hi if hi else None) for lo, hi in self.crop))

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for name, default in (("pad_first", None), ("crop", None), ("padding_mode", "zeros"), ("_slices", None)):
            self.__dict__.setdefault(name, default)  # a branch pickled before crops existed

    def align(self, x: torch.Tensor) -> torch.Tensor:
        """The branch's input: x padded by ``pad_first`` (the block's mode), then cropped by ``crop``."""
        if self.pad_first is not None:
            x = pad_pairs(x, self.pad_first, self.padding_mode)
        return x if self._slices is None else x[self._slices]

    def conv_input_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """The shape ``align`` gives for an input of ``input_shape``: S + pad_first − crop per spatial dim."""
        shape = list(input_shape)
        for d, ((a, b), (c, e)) in enumerate(zip(self.pad_first or ((0, 0),) * (len(shape) - 2),
                                                  self.crop or ((0, 0),) * (len(shape) - 2))):
            shape[2 + d] += a + b - c - e
        return tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self._modules  # dict look-ups, not nn.Module.__getattr__: this runs every call
        if self._slices is not None or self.pad_first is not None:
            x = self.align(x)
        return m["bn"](m["conv"](x))  # type: ignore[misc]

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in (("pad_first", self.pad_first), ("crop", self.crop)) if v is not None)


def bn_scale_shift(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BN as y = t·z + shift: t = γ/√(σ² + ε), shift = β − μ·t (fp64)."""
    t = bn.weight.detach().double() / (bn.running_var.double() + bn.eps).sqrt()
    return t, bn.bias.detach().double() - bn.running_mean.double() * t


class BranchConvNd(ConvzooLayer, nn.Module):
    """y = Σ_b BN_b(conv_b(x)) (+ BN_id(x)). Subclasses name the branches; this class holds the geometry, the
    forward, the whole layer contract and the fusion. Shapes: (N, C_in, *S) → (N, C_out, *O).

    ``branches`` maps a branch name to its kernel size (the largest is the block's ``kernel_size``); ``bias``:
    the branch convs have a bias (default False, the papers': each BN has its own shift);
    ``identity``: add BN(x) (needs C_in = C_out, stride 1 and a padding that keeps the size centred);
    None adds it exactly when that holds.
    """

    dim: ClassVar[int]

    def _build(self, in_channels: int, out_channels: int, branches: dict[str, tuple[int, ...]], stride: Any,
               padding: Padding | None, dilation: Any, groups: int, bias: bool, padding_mode: str, device: Any,
               dtype: Any, identity: bool | None, eps: float, momentum: float) -> None:
        in_channels, out_channels, groups = check_groups(in_channels, out_channels, groups)
        check_choice(padding_mode, "padding_mode", PADDING_MODES)
        kernel = tuple(max(k[d] for k in branches.values()) for d in range(self.dim))
        dil = resolve_geometry(self.dim, kernel, stride, 0, dilation).dilation
        geometry = resolve_geometry(self.dim, kernel, stride, centred_padding(kernel, dil) if padding is None
                                    else padding, dilation)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.dilation = geometry.kernel_size, geometry.stride, geometry.dilation
        self.padding, self.padding_pairs, self.padding_mode = geometry.padding, geometry.padding_pairs, padding_mode
        factory = {"device": device, "dtype": dtype}
        self.branches = nn.ModuleDict()
        for name, size in branches.items():
            signed = branch_padding(geometry.padding_pairs, kernel, size, geometry.dilation, name)
            pairs, first, crop = split_window(signed, padding_mode)
            conv = _CONVS[self.dim](in_channels, out_channels, size, geometry.stride, pairs, geometry.dilation,
                                    groups, bias, padding_mode, **factory)
            self.branches[name] = ConvBN(conv, _NORMS[self.dim](out_channels, eps, momentum, **factory), first,
                                         crop, padding_mode)
        centre = tuple(d * ((k - 1) // 2) for k, d in zip(kernel, geometry.dilation))
        fits = (in_channels == out_channels and geometry.stride == (1,) * self.dim
                and all(lo == c and lo + hi == d * (k - 1)
                        for (lo, hi), c, k, d in zip(geometry.padding_pairs, centre, kernel, geometry.dilation)))
        if identity and not fits:
            raise ValueError(f"identity=True needs in_channels == out_channels (got {in_channels}, {out_channels}), "
                             f"stride 1 (got {geometry.stride}) and a centred size-keeping padding (got "
                             f"{geometry.padding_pairs})")
        self.identity = _NORMS[self.dim](out_channels, eps, momentum, **factory) if (
            fits if identity is None else identity) else None

    def reset_parameters(self) -> None:
        for branch in self.branches.values():
            branch.conv.reset_parameters()
            branch.bn.reset_parameters()
        if self.identity is not None:
            self.identity.reset_parameters()

    # --- the branch names before they were ASCII ('k×k' for 'kxk'; '×' broke loading a saved torch.jit.trace) ---------

    def _legacy_branch_names(self) -> dict[str, str]:
        """{old name: name} for the branches whose name was spelt with '×' for 'x' (ACNet's, RepVGG's)."""
        return {name.replace("x", "×"): name for name in self.branches if "x" in name}

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, local_metadata: dict[str, Any],
                              strict: bool, missing_keys: list[str], unexpected_keys: list[str],
                              error_msgs: list[str]) -> None:
        # runs before the children load, on load_state_dict's own copy of the dict: renaming here lets a state dict
        # saved with 'branches.k×k.…' keys fill 'branches.kxk.…' (a method, not a per-instance hook: it also
        # serves blocks unpickled from older files and user subclasses)
        for old, new in self._legacy_branch_names().items():
            old_prefix, new_prefix = f"{prefix}branches.{old}.", f"{prefix}branches.{new}."
            for key in [k for k in state_dict if k.startswith(old_prefix)]:
                renamed = new_prefix + key[len(old_prefix):]
                if renamed not in state_dict:  # both spellings given: the old one stays, reported as unexpected
                    state_dict[renamed] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,  # type: ignore[misc]
                                      missing_keys, unexpected_keys, error_msgs)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # type: ignore[misc]
        branches = self.__dict__.get("_modules", {}).get("branches")
        if branches is not None and any("×" in name for name in branches._modules):  # a block pickled with '×'
            branches._modules = type(branches._modules)(
                (name.replace("×", "x"), module) for name, module in branches._modules.items())

    forward = input_checked(planned_forward)

    def plan_forward(self, x: torch.Tensor) -> Runner:
        """The window check once per key (``forward`` checked the rank and channels of the input as given); the
        runner sums the branches (and the identity's BN)."""
        check_window_fits(x.shape[2:], self.kernel_size, self.dilation, self.padding_pairs, type(self).__name__,
                          self.padding_mode)
        return _branches_sum

    # --- structural re-parameterisation ---------------------------------------------------------------------------

    def _branch_kernel(self, name: str, conv: nn.Module) -> torch.Tensor:
        """Branch ``name``'s cross-correlation kernel (a 'convolution'-mode conv's weight flipped), checked to be one
        conv with the block's channels and groups: ``convert`` may have replaced it by another family."""
        expected = (self.out_channels, self.in_channels // self.groups)
        plain = isinstance(conv, nn.modules.conv._ConvNd) and not isinstance(conv, nn.modules.conv._ConvTransposeNd)
        weight = (conv.kernel() if isinstance(conv, ConvNd) else conv.weight) if plain else None
        if weight is None or tuple(weight.shape[:2]) != expected or weight.dim() != self.dim + 2:
            found = f" with a {tuple(weight.shape)} weight" if weight is not None else ""
            raise ValueError(f"{type(self).__name__}.branches[{name!r}].conv is {type(conv).__name__}{found}, not one "
                             f"conv with a ({expected[0]}, {expected[1]}, k…) weight: only blocks whose branches are "
                             "plain convs fuse (reparameterize before convert, or leave the block out of convert)")
        return weight

    def fused_conv(self) -> ConvNd:
        """The ONE conv (a ``convzoo.Conv{1,2,3}d``, so a ``torch.nn.Conv*d``) equal to this block at inference
        (BatchNorm with its running statistics). Computed in fp64, stored in the block's dtype."""
        first = next(self.parameters())  # device and dtype
        kernel = torch.zeros(self.out_channels, self.in_channels // self.groups, *self.kernel_size,
                             dtype=torch.float64, device=first.device)
        bias = torch.zeros(self.out_channels, dtype=torch.float64, device=first.device)
        for name, branch in self.branches.items():
            t, shift = bn_scale_shift(branch.bn)
            w = self._branch_kernel(name, branch.conv).detach().double() * t.reshape(-1, *(1,) * (self.dim + 1))
            kernel += _embed(w, self.kernel_size)
            bias += shift
            if branch.conv.bias is not None:  # BN(Wx + c) = t·Wx + t·c + shift
                bias += t * branch.conv.bias.detach().double()
        if self.identity is not None:
            t, shift = bn_scale_shift(self.identity)
            per_group = self.in_channels // self.groups
            eye = torch.zeros(self.out_channels, per_group, *(1,) * self.dim, dtype=torch.float64, device=first.device)
            eye[torch.arange(self.out_channels), torch.arange(self.out_channels) % per_group] = 1.0
            kernel += _embed(eye * t.reshape(-1, *(1,) * (self.dim + 1)), self.kernel_size)
            bias += shift
        conv = _CONVS[self.dim](self.in_channels, self.out_channels, self.kernel_size, self.stride,
                                self.padding_pairs, self.dilation, self.groups, True, self.padding_mode,
                                device=first.device, dtype=first.dtype)
        with torch.no_grad():
            conv.weight.copy_(kernel)
            conv.bias.copy_(bias)
        return conv

    # --- the contract ---------------------------------------------------------------------------------------------

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """Σ_b conv MACs N·prod(O)·C_out·(C_in/g)·prod(k_b); each BN 2 ops per output element (inference); the sum of
        the branches 1 op per output element per extra branch. A branch's conv is costed on its own (cropped) input;
        the crop is a view and costs nothing."""
        parts = []
        for branch in self.branches.values():
            conv = branch.conv.cost(branch.conv_input_shape(tuple(input_shape)))
            parts += [conv, module_cost(branch.bn, conv.output_shape)]
        out = parts[0].output_shape
        if self.identity is not None:
            parts.append(module_cost(self.identity, tuple(input_shape)))
        extra = len(self.branches) + (self.identity is not None) - 1
        parts.append(elementwise_cost(out, extra))
        return compose(parts, out)

    def reference_output(self, x: np.ndarray) -> np.ndarray:
        from ..oracle import reference as ref

        def stats(bn: nn.Module) -> tuple[Any, Any, Any, Any]:
            return (to_numpy(bn.running_mean), to_numpy(bn.running_var), to_numpy(bn.weight), to_numpy(bn.bias))

        branches = [(to_numpy(b.conv.weight), to_numpy(b.conv.bias), stats(b.bn)) for b in self.branches.values()]
        identity = None if self.identity is None else stats(self.identity)
        eps = next(iter(self.branches.values())).bn.eps
        return ref.branch_sum(x, branches, identity, self.stride, self.padding, self.dilation, self.groups,
                              self.padding_mode, eps, self.training)

    def native_alternatives(self) -> list[Alternative]:
        """The branches as F.conv + F.batch_norm, summed; in eval mode also the fused single conv."""
        calls = [(b.align, native_conv_call(b.conv), b.bn) for b in self.branches.values()]

        def branches(x: torch.Tensor) -> torch.Tensor:
            out = sum(bn(call(align(x))) for align, call, bn in calls)
            return out + self.identity(x) if self.identity is not None else out

        out: list[Alternative] = [("native", "branches: F.conv + BN, summed", branches)]
        if not self.training:
            out.append(("native", "fused single conv (re-parameterised)", native_conv_call(self.fused_conv())))
        return out

    def approximate_dense_(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        """W (projected onto the groups, fitted to K) in the largest branch with BN set to the identity map; the
        other branches zeroed (γ = 0); exact in eval mode for a dense block (groups = 1)."""
        from ..dense_kernels import load_, relative_frobenius_error

        blocks, effective = grouped_projection(weight, self.groups, self.kernel_size)
        main = max(self.branches.values(), key=lambda b: b.conv.weight[0, 0].numel())
        with torch.no_grad():
            for branch in self.branches.values():
                bn = branch.bn
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0)
                load_(branch.conv.weight, blocks if branch is main else None)
                load_(branch.conv.bias, None)
                bn.weight.fill_((1.0 + bn.eps) ** 0.5 if branch is main else 0.0)
                load_(bn.bias, bias if branch is main else None)
            if self.identity is not None:
                self.identity.weight.zero_()
                self.identity.bias.zero_()
        return relative_frobenius_error(effective, weight)

    def receptive_field_step(self, field: Any, in_shape: Any, step: Callable[..., Any]) -> Any:
        """Every branch lies inside the K window: the block's field is the K window's."""
        return field.window(self.kernel_size, self.stride, self.dilation, [lo for lo, _ in self.padding_pairs])

    def stages(self) -> list[Stage]:
        """Each branch (conv → BN) as a side stage on the input, the identity branch (BN(x), no kernel) too when
        there is one, then their sum (the block)."""
        sides = [Stage(f"{name} branch (conv → BN)", b, side=True, module=b.conv) for name, b in self.branches.items()]
        if self.identity is not None:
            sides.append(Stage("identity branch (BN)", self.identity, side=True, module=self.identity))
        total = "sum of the branches" + (" + BN(x) (identity branch)" if self.identity is not None else "")
        return [*sides, Stage(total, self)]

    def extra_repr(self) -> str:
        first = next(iter(self.branches.values())).conv
        geometry = geometry_repr(self, bias=getattr(first, "bias", None) is not None)
        return f"{geometry}, branches=({', '.join(self.branches)}), identity={self.identity is not None}"


def _embed(w: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Zero-pad a kernel to ``size``, placing it at offset (K − k) // 2 per dim (the branches' alignment)."""
    from ..dense_kernels import fit_kernel

    return fit_kernel(w, tuple(size))


def _branches_sum(m: BranchConvNd, x: torch.Tensor) -> torch.Tensor:
    """Σ_b BN_b(conv_b(x)) (+ BN_id(x)), the sub-modules read from ``_modules`` (no nn.Module.__getattr__)."""
    modules = m._modules
    out = sum(branch(x) for branch in modules["branches"]._modules.values())  # type: ignore[union-attr,misc]
    identity = modules.get("identity")  # None is kept as a plain attribute
    return out + identity(x) if identity is not None else out
