"""Defects a learner found in ``convzoo figures``: each figure fixed here is checked on the numbers it draws (the
texts of the rendered matplotlib figure, with their positions) against torch's own ops, and its caption against
what is drawn."""

from __future__ import annotations

import re

import numpy as np
import torch
import torch.nn.functional as F

from convzoo.viz.article_figures import ARTICLE_K, ARTICLE_X, FIGURES
from convzoo.viz.draw import TITLE, plt

BY_NAME = {f.name: f for f in FIGURES}
NUMBER = re.compile(r"-?\d+(\.\d+)?")


def drawn_texts(name: str) -> list[tuple[str, float, float]]:
    """(text, x, y) of every text the figure draws (English), in drawing order; x, y in cell units."""
    fig = BY_NAME[name].figure(lang="en", header=False)
    try:
        return [(t.get_text(), *t.get_position()) for t in fig.axes[0].texts]
    finally:
        plt.close(fig)


def drawn_sizes(name: str) -> dict[str, float]:
    """The font size (points) of each text the figure draws."""
    fig = BY_NAME[name].figure(lang="en", header=False)
    try:
        return {t.get_text(): t.get_fontsize() for t in fig.axes[0].texts}
    finally:
        plt.close(fig)


def grid_after(texts: list[tuple[str, float, float]], heading: str, n: int, nth: int = 0) -> list[tuple[float, float,
                                                                                                          float]]:
    """(value, x, y) of the first ``n`` numbers drawn after the ``nth`` text equal to ``heading``."""
    starts = [k for k, (t, _, _) in enumerate(texts) if t == heading]
    assert len(starts) > nth, f"no text {heading!r} drawn"
    found = [(float(t), x, y) for t, x, y in texts[starts[nth] + 1:] if NUMBER.fullmatch(t)][:n]
    assert len(found) == n
    return found


def as_grid(found: list[tuple[float, float, float]]) -> np.ndarray:
    """The numbers laid out as drawn: rows by y, columns by x."""
    xs = sorted({round(x, 3) for _, x, _ in found})
    ys = sorted({round(y, 3) for _, _, y in found})
    out = np.full((len(ys), len(xs)), np.nan)
    for v, x, y in found:
        out[ys.index(round(y, 3)), xs.index(round(x, 3))] = v
    return out


# --- 001-6_conv-matrix: x, C, y = Cx and Cᵀy reshaped; the shape comes back, not the values ----------------------

def _article_conv() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    x = torch.tensor(ARTICLE_X, dtype=torch.float64)[:4, :4][None, None]
    k = torch.tensor(ARTICLE_K, dtype=torch.float64)[None, None]
    y = F.conv2d(x, k)
    return x, k, y, F.conv_transpose2d(y, k)


def test_conv_matrix_example_is_the_conv_and_its_transpose():
    from convzoo.viz.article_figures import conv_matrix_example

    d = conv_matrix_example()
    _, _, y, up = _article_conv()
    c = np.zeros((4, 16))  # by hand: output (i, j) reads input (i + a, j + b) through tap (a, b)
    for i, j, a, b in np.ndindex(2, 2, 3, 3):
        c[2 * i + j, 4 * (i + a) + j + b] = ARTICLE_K[a][b]
    np.testing.assert_allclose(d.c, c)
    np.testing.assert_allclose(d.ct, c.T)
    np.testing.assert_allclose(d.y, y[0, 0].numpy())
    np.testing.assert_allclose(d.up, up[0, 0].numpy())
    np.testing.assert_allclose(d.ctc, c.T @ c)


def test_conv_matrix_figure_reshapes_and_says_the_values_do_not_come_back():
    name = "001-6_conv-matrix"
    texts = drawn_texts(name)
    x, _, y, up = _article_conv()
    x, y, up = x[0, 0].numpy(), y[0, 0].numpy(), up[0, 0].numpy()
    np.testing.assert_array_equal(as_grid(grid_after(texts, "x (4×4)", 16)), x)
    np.testing.assert_array_equal(as_grid(grid_after(texts, "x (16)", 16)), x.reshape(16, 1))
    np.testing.assert_array_equal(as_grid(grid_after(texts, "y = Cx (2×2)", 4)), y)
    np.testing.assert_array_equal(as_grid(grid_after(texts, "Cᵀy (16)", 16)), up.reshape(16, 1))
    np.testing.assert_array_equal(as_grid(grid_after(texts, "Cᵀy (4×4)", 16)), up)  # reshaped, not a column
    c = np.zeros((4, 16))
    for i, j, a, b in np.ndindex(2, 2, 3, 3):
        c[2 * i + j, 4 * (i + a) + j + b] = ARTICLE_K[a][b]
    diag = (c.T @ c).diagonal().reshape(4, 4)
    np.testing.assert_array_equal(as_grid(grid_after(texts, "diag(CᵀC) as 4×4", 16)), diag)
    assert not np.allclose(diag, 1)
    sizes = drawn_sizes(name)
    for sign in ("·", "=", "≠"):  # operators larger than the title, not specks
        assert sizes.get(sign, 0) > TITLE, sign
    # the figure and both captions name one cell where Cᵀy differs from x, with the computed numbers
    said = " ".join(t for t, _, _ in texts)
    m = re.search(r"Cᵀy\[(\d),(\d)\] = (\d+), x\[\1,\2\] = (\d+)", said)
    assert m and "CᵀC ≠ I" in said
    r, q = int(m[1]), int(m[2])
    assert (float(m[3]), float(m[4])) == (up[r, q], x[r, q]) and up[r, q] != x[r, q]
    f = BY_NAME[name]
    for caption in (f.caption, f.caption_zh):
        assert "CᵀC ≠ I" in caption and "4×16" in caption
        cap = re.search(r"Cᵀy\[(\d),(\d)\] = (\d+)\D+x\[\1,\2\] = (\d+)", caption)
        assert cap and (float(cap[3]), float(cap[4])) == (up[int(cap[1]), int(cap[2])], x[int(cap[1]), int(cap[2])])


# --- 001-4_1x1-conv: every input channel's pixel feeds each output pixel through the 1×1×4 filter -------------------

def test_pointwise_example_is_the_layer_output():
    from convzoo.viz.article_figures import pointwise_example

    d = pointwise_example()
    expected = F.conv2d(torch.from_numpy(d.x)[None], torch.from_numpy(d.weight)[..., None, None])[0].numpy()
    np.testing.assert_allclose(d.out, expected)
    assert d.x.shape == (4, 4, 4) and d.weight.shape == (2, 4)
    assert len(set(d.x[:, d.pixel[0], d.pixel[1]].tolist())) == 4  # four different values: each sum can be followed


def test_one_by_one_figure_draws_every_channel_the_weights_and_the_sums():
    from convzoo.viz.article_figures import pointwise_example

    d = pointwise_example()
    texts = drawn_texts("001-4_1x1-conv")
    out = F.conv2d(torch.from_numpy(d.x)[None], torch.from_numpy(d.weight)[..., None, None])[0].numpy()
    r, q = d.pixel
    for c in range(4):  # all 4 input channels with their values, not plane c0 alone
        plane = grid_after(texts, f"c{c}", 16)
        np.testing.assert_array_equal(as_grid(plane), d.x[c])
        # right of the plane, on the drawn pixel's row: the weight of channel c in filter 0, then in filter 1 (the
        # old figure printed the tap index 0 in one kernel cell, read as the value 0)
        y_pixel = sorted({y for _, _, y in plane})[r]
        x_end = max(x for _, x, _ in plane)
        beside = sorted((x, t) for t, x, y in texts if abs(y - y_pixel) < 1e-6 and x > x_end)
        assert [float(t) for _, t in beside] == d.weight[:, c].tolist()
    for j in range(2):
        np.testing.assert_array_equal(as_grid(grid_after(texts, f"output c{j} (4×4)", 16)), out[j])
        products = " + ".join(f"{int(w)}·{int(v)}" if w >= 0 else f"({int(w)})·{int(v)}"
                              for w, v in zip(d.weight[j], d.x[:, r, q]))
        assert f"{products}\n= {int(out[j, r, q])}" in [t for t, _, _ in texts]


# --- 001-12_pointwise-grouped: the block-diagonal channel matrix its caption promises -------------------------------

def test_grouped_pointwise_matrix_is_the_weight_in_diagonal_blocks():
    from convzoo.viz.article_figures import pointwise_grouped_example

    d = pointwise_grouped_example()
    weight = d.layer.weight.detach()[..., 0, 0]  # (6, 2)
    blocks = torch.block_diag(*weight.split(2))  # group k: outputs 2k, 2k+1 read inputs 2k, 2k+1
    np.testing.assert_array_equal(d.matrix, blocks.numpy())
    assert (d.matrix[np.kron(np.eye(3), np.ones((2, 2))) == 0] == 0).all() and (d.weight != 0).all()
    y = F.conv2d(torch.from_numpy(d.x)[None], d.layer.weight.detach(), groups=3)[0].numpy()
    np.testing.assert_allclose(d.y, y)


def test_grouped_pointwise_figure_draws_the_matrix_times_a_pixel():
    from convzoo.viz.article_figures import pointwise_grouped_example

    d = pointwise_grouped_example()
    texts = drawn_texts("001-12_pointwise-grouped")
    weight = d.layer.weight.detach()[..., 0, 0]
    np.testing.assert_array_equal(as_grid(grid_after(texts, "W (6×6): the 1×1 channel matrix", 36)),
                                  torch.block_diag(*weight.split(2)).numpy())
    r, q = d.pixel
    y = F.conv2d(torch.from_numpy(d.x)[None], d.layer.weight.detach(), groups=3)[0].numpy()
    np.testing.assert_array_equal(as_grid(grid_after(texts, f"x[:, {r}, {q}]", 6)), d.x[:, r, q, None])
    np.testing.assert_array_equal(as_grid(grid_after(texts, f"y[:, {r}, {q}]", 6)), y[:, r, q, None])
    assert "block-diagonal" in BY_NAME["001-12_pointwise-grouped"].caption


# --- caption slips --------------------------------------------------------------------------------------------------

def test_checkerboard_says_the_kernel_sizes_it_uses():
    from convzoo.viz.article_figures import even_kernel

    sizes = [f"{k}×{k}" for k in (3, even_kernel(3, 2), 3)]  # transposed k=3, transposed k=4, resize-conv's 3×3
    f = BY_NAME["001-6_checkerboard-image"]
    for caption in (f.caption, f.caption_zh):
        assert "same" not in caption and "同一个" not in caption
        assert re.findall(r"\d×\d", caption)[-3:] == sizes
    note = next(t for t, _, _ in drawn_texts(f.name) if t.startswith("each kernel is uniform"))
    assert re.findall(r"\d×\d", note)[:3] == sizes


def test_3d_conv_names_the_output_depth_slices():
    x = torch.zeros(1, 1, 4, 5, 5)
    depth = F.conv3d(x, torch.zeros(1, 1, 3, 3, 3)).shape[2]  # 4 − 3 + 1
    slices = ", ".join(map(str, range(depth)))
    texts = [t for t, _, _ in drawn_texts("001-3_3d-conv")]
    note = next(t for t in texts if t.startswith("OUTPUT") and "depth slices" in t)
    assert f"OUTPUT 1×{depth}×3×3: depth slices d = {slices} left to right" in note
    assert f"slice d = {depth - 1} and reads input slices d = {depth - 1}–{depth + 1}" in note
    f = BY_NAME["001-3_3d-conv"]
    assert f"output's {depth} slices d = {slices}" in f.caption and f"输出的 {depth} 个切片 d = 0、1" in f.caption_zh


def test_sobel_figure_draws_the_1x9_conv_matrix_and_its_reshape():
    col = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64).reshape(1, 1, 3, 1)
    row = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64).reshape(1, 1, 1, 3)
    ones = torch.eye(9, dtype=torch.float64).reshape(9, 1, 3, 3)  # one-hot 3×3 inputs: column i of the conv matrix
    c = F.conv2d(F.conv2d(ones, col), row).reshape(1, 9).numpy()
    np.testing.assert_array_equal(c.reshape(3, 3), [[1, 0, -1], [2, 0, -2], [1, 0, -1]])  # Sobel
    texts = drawn_texts("001-8.1_sobel-separable")
    drawn = as_grid(grid_after(texts, "the layer's conv matrix on a 3×3 input: 1×9 (1 output × 9 inputs)", 9))
    np.testing.assert_array_equal(drawn, c)  # one row of 9, as the conv matrix is
    np.testing.assert_array_equal(as_grid(grid_after(texts, "3×3: the kernel above", 9)), c.reshape(3, 3))
    f = BY_NAME["001-8.1_sobel-separable"]
    assert "1×9" in f.caption and "1×9" in f.caption_zh and "as its conv matrix" not in f.caption
