"""Every convolution family as a ``torch.nn.Module``: one family a file, each on the contract in ``base.py``."""

from .base import CONTRACT, ConvzooLayer, Stage, compose_stages
from . import compiled_layer  # noqa: F401  (registers the compiled op; base reaches it through a slot)
from .conv import Conv1d, Conv2d, Conv3d, ConvNd
from .deformable import DeformConv2d
from .depthwise import (
    DepthwiseConv1d,
    DepthwiseConv2d,
    DepthwiseConv3d,
    DepthwiseConvNd,
    DepthwiseSeparableConv1d,
    DepthwiseSeparableConv2d,
    DepthwiseSeparableConv3d,
    DepthwiseSeparableConvNd,
)
from .dynamic import DynamicConv1d, DynamicConv2d, DynamicConv3d, DynamicConvNd, KernelAttention
from .flattened import FlattenedConv2d
from .global_depthwise import GlobalDepthwiseConv2d
from .hetconv import HetConv2d
from .mixconv import MixConv2d, split_channels
from .pointwise import PointwiseConv1d, PointwiseConv2d, PointwiseConv3d, PointwiseConvNd
from .resize import ResizeConv1d, ResizeConv2d, ResizeConv3d, ResizeConvNd
from .separable import SpatiallySeparableConv2d, separate_kernel
from .shuffle import (
    ChannelShuffle,
    ShuffledGroupedConv1d,
    ShuffledGroupedConv2d,
    ShuffledGroupedConv3d,
    ShuffledGroupedConvNd,
)
from .condconv import CondConv1d, CondConv2d, CondConv3d, CondConvNd, Routing
from .dcnv3 import DCNv3Conv2d, OffsetMaskBranch
from .involution import Involution1d, Involution2d, Involution3d, InvolutionNd, KernelGenerator
from .odconv import ODConv1d, ODConv2d, ODConv3d, ODConvNd, OmniAttention
from .selective_kernel import (
    BranchAttention,
    BranchSelect,
    SelectiveKernelConv1d,
    SelectiveKernelConv2d,
    SelectiveKernelConv3d,
    SelectiveKernelConvNd,
)
from .transposed import TransposedConv1d, TransposedConv2d, TransposedConv3d, TransposedConvNd
from .subpixel import PixelShuffleNd, SubPixelConv1d, SubPixelConv2d, SubPixelConv3d, SubPixelConvNd
from .branches import BranchConvNd
from .acnet import ACNetConv2d, ACNetConv3d, ACNetConvNd
from .repvgg import RepVGGBlock1d, RepVGGBlock2d, RepVGGBlock3d, RepVGGBlockNd
from .large_kernel import LargeKernelConv1d, LargeKernelConv2d, LargeKernelConv3d, LargeKernelConvNd
from .partial import PartialConv1d, PartialConv2d, PartialConv3d, PartialConvNd
from .ghost import GhostModule1d, GhostModule2d, GhostModule3d, GhostModuleNd

__all__ = [
    "CONTRACT", "ChannelShuffle", "Conv1d", "Conv2d", "Conv3d", "ConvNd", "ConvzooLayer", "DeformConv2d",
    "DepthwiseConv1d", "DepthwiseConv2d", "DepthwiseConv3d", "DepthwiseConvNd", "DepthwiseSeparableConv1d",
    "DepthwiseSeparableConv2d", "DepthwiseSeparableConv3d", "DepthwiseSeparableConvNd", "DynamicConv1d",
    "DynamicConv2d", "DynamicConv3d", "DynamicConvNd", "FlattenedConv2d", "GlobalDepthwiseConv2d", "HetConv2d",
    "KernelAttention", "MixConv2d", "PointwiseConv1d", "PointwiseConv2d", "PointwiseConv3d", "PointwiseConvNd",
    "ResizeConv1d", "ResizeConv2d", "ResizeConv3d", "ResizeConvNd", "ShuffledGroupedConv1d", "ShuffledGroupedConv2d",
    "ShuffledGroupedConv3d", "ShuffledGroupedConvNd", "SpatiallySeparableConv2d", "Stage", "TransposedConv1d",
    "TransposedConv2d", "TransposedConv3d", "TransposedConvNd", "compose_stages", "separate_kernel",
    "split_channels",
    # issue 15a: sub-pixel, re-parameterisable blocks, partial, ghost
    "PixelShuffleNd", "SubPixelConv1d", "SubPixelConv2d", "SubPixelConv3d", "SubPixelConvNd", "BranchConvNd",
    "ACNetConv2d", "ACNetConv3d", "ACNetConvNd", "RepVGGBlock1d", "RepVGGBlock2d", "RepVGGBlock3d",
    "RepVGGBlockNd", "LargeKernelConv1d", "LargeKernelConv2d", "LargeKernelConv3d", "LargeKernelConvNd",
    "PartialConv1d", "PartialConv2d", "PartialConv3d", "PartialConvNd", "GhostModule1d", "GhostModule2d",
    "GhostModule3d", "GhostModuleNd",
    "CondConv1d", "CondConv2d", "CondConv3d", "CondConvNd", "Routing",
    "ODConv1d", "ODConv2d", "ODConv3d", "ODConvNd", "OmniAttention",
    "BranchAttention", "BranchSelect", "SelectiveKernelConv1d", "SelectiveKernelConv2d", "SelectiveKernelConv3d",
    "SelectiveKernelConvNd",
    "Involution1d", "Involution2d", "Involution3d", "InvolutionNd", "KernelGenerator",
    "DCNv3Conv2d", "OffsetMaskBranch",
]
