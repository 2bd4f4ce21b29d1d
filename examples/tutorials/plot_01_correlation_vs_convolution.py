"""
Correlation vs convolution
==========================

Article 001 §1, article 003 §1.1–1.2. Families: `standard`, `convolution`.

Deep learning's "convolution" is the signal-processing cross-correlation: the kernel slides over the input
without being flipped. A true convolution rotates the kernel by 180° first. convzoo has both: ``cz.Conv2d``
(torch's correlation) and ``cz.Conv2d(..., mode="convolution")``.
"""

# %%
import torch

import convzoo as cz

x = torch.arange(25.0).reshape(1, 1, 5, 5)
k = torch.tensor([[[[0.0, 1, 2], [2, 2, 0], [0, 1, 2]]]])
print("correlation:\n", cz.functional.correlate(x, k)[0, 0])
print("convolution:\n", cz.functional.convolve(x, k)[0, 0])

# %%
# A convolution is the correlation with the kernel rotated 180°:

print(torch.equal(cz.functional.convolve(x, k), cz.functional.correlate(x, cz.functional.flip_kernel(k))))

# %%
# For a symmetric kernel the two agree; for learned kernels the flip is just a relabelling of the weights,
# which is why CNNs never bother. The picture: the same window, the tap colours mirrored.

from convzoo.viz.article_figures import FIGURES

next(f for f in FIGURES if f.name == "001-1_correlation-vs-convolution").figure()
