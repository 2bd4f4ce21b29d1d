"""SK's select step, as its stage picture draws it: the weights printed are the layer's attention a_m.

The select step V = Σ_m a_m ⊙ U_m takes the attention held (the side branch's values). Pictures read the weights
from the step's Jacobian with clipping activations taken out of the data path (``viz.linear``); the attention's own
ReLU steers the step and must stay: with it taken out the drawn a_m were off (.54 for .46) and the sum line showed
a "bias" that the step does not have. The independent values: a = softmax_m(select(ReLU(squeeze(GAP(Σ_m U_m)))))
computed here with torch ops from the layer's parameters.
"""

from __future__ import annotations

import torch

import convzoo as cz
from convzoo.viz.picture import _stage_module, declared_stages
from convzoo.viz.reads import analyse, illustrative_copy
from convzoo.viz.step import sum_line
from convzoo.viz.taps import DTYPE


def _attention_by_hand(layer: torch.nn.Module, u: torch.Tensor) -> torch.Tensor:
    """(M, C) weights of one sample from the branch outputs u (1, M·C, H, W), by the paper's equations."""
    att = layer.attention
    m, c = att.branches, att.squeeze.in_features
    s = u.reshape(m, c, *u.shape[2:]).sum(0).mean(dim=(1, 2))  # GAP(Σ_m U_m): (C,)
    z = torch.relu(att.squeeze.weight @ s + att.squeeze.bias)
    return torch.softmax((att.select.weight @ z + att.select.bias).reshape(m, c), dim=0)


def test_the_select_step_prints_the_layers_attention_and_no_bias() -> None:
    torch.manual_seed(0)
    shape = (6, 8, 8)
    model = illustrative_copy(cz.build("selective_kernel", 6, 6, (3, 5)), shape, 0, own=True)
    stages = [s for s in declared_stages(model) if not s.side]
    x = torch.rand(1, *shape, generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    u = stages[0].fn(x).detach()
    with torch.no_grad():
        v = stages[1].fn(u)
    r = analyse(_stage_module(stages[1], u, v), tuple(u.shape[1:]), x=u[0], illustrate=False)
    want = _attention_by_hand(model, u)
    for j in range(r.output_shape[0]):
        drawn = r.pair_kernel[j][~torch.isnan(r.pair_kernel[j])]
        torch.testing.assert_close(drawn, want[:, j].to(drawn.dtype), rtol=1e-6, atol=1e-9, msg=f"channel {j}")
        assert "bias" not in sum_line(r, j, r.centre()), sum_line(r, j, r.centre())
    # the sample exercises the ReLU: some hidden unit is clipped (else the old wiring was right by chance)
    att = model.attention
    s = u.reshape(att.branches, -1, *u.shape[2:]).sum(0).mean(dim=(1, 2))
    relus_clipped = int(((att.squeeze.weight @ s + att.squeeze.bias) < 0).sum())
    assert relus_clipped > 0
