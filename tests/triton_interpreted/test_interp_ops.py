"""The custom ops behind the Triton kernels (``convzoo::triton_*``, kernels/triton_autograd.py) pass
``torch.library.opcheck``: schema, fake (meta) functions that give the real outputs' shapes and strides, the
registered backward, and AOTAutograd (what torch.compile and torch.export see: one node per op)."""

from __future__ import annotations

import pytest
import torch

from convzoo.kernels import triton_dcnv3, triton_deform, triton_depthwise, triton_involution, triton_per_sample

F64 = torch.float64


def _leaf(*shape: int, channels_last: bool = False, positive: bool = False) -> torch.Tensor:
    t = torch.rand(shape, dtype=F64) if positive else torch.randn(shape, dtype=F64)
    if channels_last:
        t = t.contiguous(memory_format=torch.channels_last)
    return t.requires_grad_()


CASES = {
    "depthwise": (triton_depthwise._call,
                  lambda: (_leaf(1, 2, 5, 4, channels_last=True), _leaf(4, 1, 3, 3), _leaf(4), [1, 1], [1, 1, 1, 1],
                           [1, 1])),
    "per_sample": (triton_per_sample._call,
                   lambda: (_leaf(2, 2, 4, 4), _leaf(2, 2, 2, 3, 3), None, 1, [2, 1], [1, 1, 0, 1], [1, 1])),
    "involution": (triton_involution._call,
                   lambda: (_leaf(1, 2, 4, 4), _leaf(1, 9, 4, 4), 1, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1])),
    "deform": (triton_deform._call,
               lambda: (_leaf(1, 2, 4, 4), _leaf(1, 8, 3, 3), _leaf(1, 4, 3, 3, positive=True), _leaf(2, 2, 2, 2),
                        _leaf(2), [1, 1], [0, 0], [1, 1])),
    "dcnv3": (triton_dcnv3._call,
              lambda: (_leaf(1, 2, 3, 3, channels_last=True), _leaf(1, 3 * 9, 3, 3), 1, [3, 3], [1, 1], 1.0)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_opcheck(name: str) -> None:
    call, arguments = CASES[name]
    torch.library.opcheck(call.op, arguments(), test_utils=("test_schema", "test_autograd_registration",
                                                            "test_faketensor", "test_aot_dispatch_dynamic"))


def test_eager_calls_skip_the_dispatcher_and_agree_with_the_op() -> None:
    """Eager: the autograd.Function (no custom-op dispatch); the op itself gives the same values and gradients."""
    call, arguments = CASES["deform"]
    args = arguments()
    y = call(*args)
    assert type(y.grad_fn).__name__.startswith("triton_deform_conv2d_function")
    y_op = call.op(*args)
    torch.testing.assert_close(y, y_op, rtol=0, atol=0)
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    weights = torch.randn(y.shape, dtype=F64)
    for a, b in zip(torch.autograd.grad(y, tensors, weights), torch.autograd.grad(y_op, tensors, weights)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
