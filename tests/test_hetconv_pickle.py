"""HetConv's scatter indices (derived from its configuration) are a cache: not pickled, dropped on moves."""

from __future__ import annotations

import copy
import io
import pickle

import torch
import torch.nn.functional as F

import convzoo as cz


def _by_hand(layer: cz.HetConv2d, x: torch.Tensor) -> torch.Tensor:
    """HetConv's definition: filter j convolves channel c with its k×k kernel where (c − j) mod p = 0 (weight_kxk
    row j, in channel order), with its 1×1 kernel at the centre tap elsewhere (weight_1x1 row j, in channel order)."""
    out, cin, p, k = layer.out_channels, layer.in_channels, layer.p, layer.kernel_size[0]
    dense = torch.zeros(out, cin, k, k, dtype=x.dtype)
    for j in range(out):
        kxk = [c for c in range(cin) if (c - j) % p == 0]
        one = [c for c in range(cin) if (c - j) % p != 0]
        for m, c in enumerate(kxk):
            dense[j, c] = layer.weight_kxk[j, m].detach()
        for m, c in enumerate(one):
            dense[j, c, k // 2, k // 2] = layer.weight_1x1[j, m].detach()
    return F.conv2d(x, dense, layer.bias.detach(), padding=k // 2)


def test_a_pickled_hetconv_leaves_its_index_cache_behind_and_still_computes_the_same():
    torch.manual_seed(0)
    layer = cz.build("hetconv", 64, 64, 3, padding=1, p=4).eval()
    x = torch.randn(2, 64, 8, 8)
    params_bytes = sum(p.numel() * p.element_size() for p in layer.parameters())
    with torch.no_grad():
        y = layer(x)
        layer.dense_weight()  # the masked-dense form and the pictures build the scatter index
    assert "_dense_index_cache" in layer.__dict__
    torch.testing.assert_close(y, _by_hand(layer, x), rtol=1e-5, atol=1e-5)
    buffer = io.BytesIO()
    torch.save(layer, buffer)
    assert len(buffer.getvalue()) < 1.1 * params_bytes  # the int64 indices were twice the float32 weights
    for copied in (pickle.loads(pickle.dumps(layer)), copy.deepcopy(layer)):
        assert "_dense_index_cache" not in copied.__dict__
        with torch.no_grad():
            torch.testing.assert_close(copied(x), _by_hand(layer, x), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(copied.dense_weight(), layer.dense_weight(), rtol=0, atol=0)


def test_moves_and_forget_cache_drop_the_index_cache():
    layer = cz.build("hetconv", 16, 16, 3, padding=1, p=4)
    layer.dense_weight()
    assert "_dense_index_cache" in layer.__dict__
    layer.double()  # _apply: a device move (map_location loads keep the old device's key) goes the same way
    assert "_dense_index_cache" not in layer.__dict__
    x = torch.randn(1, 16, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), _by_hand(layer, x), rtol=1e-10, atol=1e-10)
    layer.dense_weight()
    layer.forget_cache()
    assert "_dense_index_cache" not in layer.__dict__
