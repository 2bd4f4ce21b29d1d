"""convzoo: every convolution used in modern CNNs as a correct, fast PyTorch layer, with the arithmetic to
choose between them.

Layout, imports running one way (down): above the layers ``cli`` · ``deploy`` · ``train`` · ``viz`` · ``models`` ·
``perf`` (timing, compare, bench, optimize) · ``conversion`` · ``analysis`` (receptive field, counters) · ``verify``;
``registry`` (the list every tool iterates) and ``layers`` (one family a file, on the contract in ``layers/base.py``);
below them ``functional`` (stateless ops) · ``geometry`` (argument checks, padding) · ``arithmetic`` (shapes,
overlap, cost) · ``oracle`` (the NumPy reference) · ``dense_kernels`` · ``kernels`` (convzoo's own kernels).
"""

from importlib.metadata import PackageNotFoundError, version as _version

from .layers import (
    ChannelShuffle,
    Conv1d,
    Conv2d,
    Conv3d,
    ConvNd,
    ConvzooLayer,
    DeformConv2d,
    DepthwiseConv1d,
    DepthwiseConv2d,
    DepthwiseConv3d,
    DepthwiseConvNd,
    DepthwiseSeparableConv1d,
    DepthwiseSeparableConv2d,
    DepthwiseSeparableConv3d,
    DepthwiseSeparableConvNd,
    DynamicConv1d,
    DynamicConv2d,
    DynamicConv3d,
    DynamicConvNd,
    FlattenedConv2d,
    GlobalDepthwiseConv2d,
    HetConv2d,
    KernelAttention,
    MixConv2d,
    PointwiseConv1d,
    PointwiseConv2d,
    PointwiseConv3d,
    PointwiseConvNd,
    ResizeConv1d,
    ResizeConv2d,
    ResizeConv3d,
    ResizeConvNd,
    ShuffledGroupedConv1d,
    ShuffledGroupedConv2d,
    ShuffledGroupedConv3d,
    ShuffledGroupedConvNd,
    SpatiallySeparableConv2d,
    Stage,
    TransposedConv1d,
    TransposedConv2d,
    TransposedConv3d,
    TransposedConvNd,
    separate_kernel,
    split_channels,
    CondConv1d,
    CondConv2d,
    CondConv3d,
    CondConvNd,
    ODConv1d,
    ODConv2d,
    ODConv3d,
    ODConvNd,
    SelectiveKernelConv1d,
    SelectiveKernelConv2d,
    SelectiveKernelConv3d,
    SelectiveKernelConvNd,
    Involution1d,
    Involution2d,
    Involution3d,
    InvolutionNd,
    DCNv3Conv2d,
)
from .layers import (  # issue 15a
    PixelShuffleNd,
    SubPixelConv1d,
    SubPixelConv2d,
    SubPixelConv3d,
    SubPixelConvNd,
    BranchConvNd,
    ACNetConv2d,
    ACNetConv3d,
    ACNetConvNd,
    RepVGGBlock1d,
    RepVGGBlock2d,
    RepVGGBlock3d,
    RepVGGBlockNd,
    LargeKernelConv1d,
    LargeKernelConv2d,
    LargeKernelConv3d,
    LargeKernelConvNd,
    PartialConv1d,
    PartialConv2d,
    PartialConv3d,
    PartialConvNd,
    GhostModule1d,
    GhostModule2d,
    GhostModule3d,
    GhostModuleNd,
)
from . import functional
from .registry import Family, build, families, family
from . import analysis, arithmetic
from .arithmetic import (
    CostReport,
    LayerCost,
    LayerRow,
    conv_output_size,
    cost,
    is_even_overlap,
    overlap_map,
    transposed_output_size,
    transposed_output_sizes,
)
from .analysis import ReceptiveField, receptive_field
from . import models
from .conversion import ConversionReport, ReparameterizeReport, approximate_, convert, reparameterize
from .perf.compare import CompareRow, compare
from .perf.optimize import optimize
from .deploy.quantize import QuantizedModel, quantize

try:
    __version__ = _version("convzoo")  # the one version source is pyproject.toml
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "ChannelShuffle", "CompareRow", "ConversionReport", "Conv1d", "Conv2d", "Conv3d", "ConvNd", "ConvzooLayer",
    "CostReport",
    "DeformConv2d", "DepthwiseConv1d", "DepthwiseConv2d", "DepthwiseConv3d", "DepthwiseConvNd",
    "DepthwiseSeparableConv1d", "DepthwiseSeparableConv2d", "DepthwiseSeparableConv3d", "DepthwiseSeparableConvNd",
    "DynamicConv1d", "DynamicConv2d", "DynamicConv3d", "DynamicConvNd", "Family", "FlattenedConv2d",
    "GlobalDepthwiseConv2d", "HetConv2d", "KernelAttention", "LayerCost", "LayerRow", "MixConv2d",
    "PointwiseConv1d", "PointwiseConv2d", "PointwiseConv3d", "PointwiseConvNd", "ReceptiveField", "ResizeConv1d",
    "ResizeConv2d", "ResizeConv3d", "ResizeConvNd", "ShuffledGroupedConv1d", "ShuffledGroupedConv2d",
    "ShuffledGroupedConv3d", "ShuffledGroupedConvNd", "SpatiallySeparableConv2d", "Stage",
    "TransposedConv1d", "TransposedConv2d", "TransposedConv3d", "TransposedConvNd", "analysis", "approximate_",
    "arithmetic",
    "build", "compare", "conv_output_size", "convert", "cost", "families", "family", "functional",
    "is_even_overlap", "models", "optimize", "overlap_map", "receptive_field", "separate_kernel", "split_channels",
    "transposed_output_size", "transposed_output_sizes",
    # issue 15a
    "PixelShuffleNd", "SubPixelConv1d", "SubPixelConv2d", "SubPixelConv3d", "SubPixelConvNd", "BranchConvNd",
    "ACNetConv2d", "ACNetConv3d", "ACNetConvNd", "RepVGGBlock1d", "RepVGGBlock2d", "RepVGGBlock3d",
    "RepVGGBlockNd", "LargeKernelConv1d", "LargeKernelConv2d", "LargeKernelConv3d", "LargeKernelConvNd",
    "PartialConv1d", "PartialConv2d", "PartialConv3d", "PartialConvNd", "GhostModule1d", "GhostModule2d",
    "GhostModule3d", "GhostModuleNd", "ReparameterizeReport", "reparameterize",
    "CondConv1d", "CondConv2d", "CondConv3d", "CondConvNd",
    "ODConv1d", "ODConv2d", "ODConv3d", "ODConvNd",
    "SelectiveKernelConv1d", "SelectiveKernelConv2d", "SelectiveKernelConv3d", "SelectiveKernelConvNd",
    "Involution1d", "Involution2d", "Involution3d", "InvolutionNd",
    "DCNv3Conv2d",
    # issue 26
    "QuantizedModel", "quantize",
]
