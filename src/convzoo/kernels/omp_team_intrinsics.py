"""The numba intrinsics the launchers of ``omp_team`` are written with: an address as a typed pointer, a float from
its bits, and an atomic fetch-and-add that hands out pieces; and ``address``, which ``omp_team`` packs every array
argument with. Only launcher modules and a launcher's first call import this (it needs numba)."""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic


def _pointer_to(element: Any) -> Any:
    @intrinsic
    def pointer(typingctx: Any, address: Any) -> Any:
        """The int64 ``address`` as a pointer to ``element``s (for ``numba.carray``)."""
        sig = types.CPointer(element)(types.int64)

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            return builder.inttoptr(args[0], context.get_value_type(sig.return_type))

        return sig, codegen

    return pointer


pointer_float32 = _pointer_to(types.float32)
pointer_float64 = _pointer_to(types.float64)
pointer_int64 = _pointer_to(types.int64)
pointer_int32 = _pointer_to(types.int32)
pointer_uint8 = _pointer_to(types.uint8)


@intrinsic
def float_bits(typingctx: Any, bits: Any) -> Any:
    """The float64 whose bits are the int64 ``bits``."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def take(typingctx: Any, counter: Any) -> Any:
    """counter[0] += 1, atomically; the value before: the next piece for the calling thread."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.atomic_rmw("add", args[0], ir.Constant(ir.IntType(64), 1), "monotonic")

    return types.int64(types.CPointer(types.int64)), codegen


@njit(cache=True, nogil=True)
def address(array: Any) -> int:  # pragma: no cover - compiled
    """The address of an array's first element, without the object numpy's ``array.ctypes.data`` builds per call
    (one compilation per dtype and number of dimensions, cached on disk)."""
    return array.ctypes.data
