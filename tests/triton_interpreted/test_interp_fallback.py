"""A Triton form that runs forward but whose backward cannot run on the GPU at hand (Triton's ``OutOfResources``:
its tiles need more shared memory than the GPU has at every stage count) is dropped when a training key is
measured, with one warning naming the cause; the layer trains on its PyTorch forms. Every family with a Triton form,
each down its own choice (deformable's own, dynamic's ``for_input``, ``triton_forms.fastest``, the conv's)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import triton
from interp_checks import TOLERANCE, rel

import convzoo
from convzoo.kernels import triton_dcnv3, triton_deform, triton_depthwise, triton_involution, triton_per_sample
from convzoo.layers import form_choice, triton_forms
from convzoo.verify import randomize_parameters_

F64 = torch.float64
KERNEL_MODULES = (triton_dcnv3, triton_deform, triton_depthwise, triton_involution, triton_per_sample)
# family → (C_in, C_out): depthwise with multiplier 2 (m = 1 has no Triton form)
FAMILIES = {"depthwise": (4, 8), "dynamic": (4, 6), "condconv": (4, 6), "odconv": (4, 6), "involution": (4, 4),
            "deformable": (4, 6), "deformable_v2": (4, 6), "dcnv3": (4, 4)}


@pytest.fixture
def backward_kernels_out_of_resources(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every Triton launch but the forward kernels' raises OutOfResources, as on a GPU without the shared memory;
    yields the names of the kernels refused. Afterwards the dropped forms are offered again (one process runs all
    the interpreter tests)."""
    refused: list[str] = []
    for module in KERNEL_MODULES:
        real = module.launch

        def launch(kernel, grid, *args, real=real, **constants):
            if kernel.fn.__name__ != "_forward_kernel":
                refused.append(kernel.fn.__name__)
                raise triton.OutOfResources(108032, 101376, "shared memory")
            return real(kernel, grid, *args, **constants)

        monkeypatch.setattr(module, "launch", launch)
    form_choice.forget_choices()
    yield refused
    for choice in list(form_choice._INSTANCES):
        choice.failed.pop(triton_forms.TRITON, None)
    triton_forms._broken.clear()
    form_choice.forget_choices()


@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_triton_form_whose_backward_cannot_run_is_dropped_and_the_layer_trains(
        name: str, backward_kernels_out_of_resources: list[str]) -> None:
    c_in, c_out = FAMILIES[name]
    layer = randomize_parameters_(convzoo.build(name, c_in, c_out, 3).to(F64), torch.Generator().manual_seed(1))
    x = torch.randn(2, c_in, 6, 6, dtype=F64, generator=torch.Generator().manual_seed(2), requires_grad=True)
    with pytest.warns(RuntimeWarning, match=r"without its form 'triton'.*OutOfResources"):
        y = layer(x)
    assert backward_kernels_out_of_resources, "the Triton form's backward was never measured"
    assert rel(y, layer.reference_output(x.detach().numpy())) < TOLERANCE[F64]
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in layer.parameters() if p.requires_grad)
    assert any(choice.failed.get(triton_forms.TRITON) for choice in form_choice._INSTANCES)
