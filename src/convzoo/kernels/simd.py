"""Explicit SIMD blocks for the numba kernels: a (LANES,) accumulator that LLVM keeps in vector registers.

numba leaves LLVM's SLP vectoriser off and its loop vectoriser unrolls short loops into vectors wider than a
56-wide feature-map row, so a row of outputs accumulated tap by tap would run scalar or through memory. These
intrinsics emit the vector IR directly: ``block(like)`` is a stack array of LANES elements (an ``alloca`` that LLVM
promotes to registers when the block lives inside one function), and every operation on it is one masked vector
load / fused multiply-add / store over the lanes set in ``mask`` (an int, bit l for lane l; ``lanes(lo, hi)``
builds one, ``FULL`` is every lane — a constant FULL compiles to plain loads and stores). Lanes outside the mask
read nothing (a masked load, or a clamped index whose value is discarded) and contribute zero, which is how zero
padding and row ends are handled without a padded copy. Offsets count elements of a 1-D C-contiguous array (a
ravelled tensor).

Only kernel modules import this (it needs numba); offsets and masks are int64.
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array

from .numba_runtime import njit

LANES = 16  # one AVX-512 register of fp32 (two of fp64, two / four AVX2 registers); LLVM splits as the CPU needs
FULL = (1 << LANES) - 1

_I32 = ir.IntType(32)
_I1 = ir.IntType(1)


@njit()
def lanes(lo: int, hi: int) -> int:  # pragma: no cover - compiled
    """The mask of lanes lo <= l < hi (0 <= lo, hi <= LANES)."""
    return ((1 << hi) - 1) & ~((1 << lo) - 1) if lo < hi else 0


def _vector_type(context: Any, dtype: Any) -> ir.VectorType:
    return ir.VectorType(context.get_data_type(dtype), LANES)


def _element_pointer(context: Any, builder: Any, arrty: Any, arr: Any, start: Any) -> Any:
    data = make_array(arrty)(context, builder, arr).data
    return builder.gep(data, [start])


def _splat(builder: Any, vty: ir.VectorType, value: Any) -> Any:
    vec = builder.insert_element(ir.Constant(vty, ir.Undefined), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(vec, ir.Constant(vty, ir.Undefined),
                                  ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES))


def _mask_vector(builder: Any, mask: Any) -> Any:
    """<LANES x i1> from the low LANES bits of an integer."""
    return builder.bitcast(builder.trunc(mask, ir.IntType(LANES)), ir.VectorType(_I1, LANES))


def _lane_set(builder: Any, mask: Any, lane: int) -> Any:
    bit = builder.and_(builder.lshr(mask, ir.Constant(mask.type, lane)), ir.Constant(mask.type, 1))
    return builder.icmp_unsigned("!=", bit, ir.Constant(mask.type, 0))


def _intrinsic_fn(builder: Any, name: str, ret: Any, args: list[Any]) -> Any:
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ret, args), name)


def _suffix(vty: ir.VectorType) -> str:
    return f"v{LANES}{'f32' if vty.element == ir.FloatType() else 'f64'}"


def _masked_load(context: Any, builder: Any, arrty: Any, arr: Any, start: Any, mask: Any) -> Any:
    """src[start + l] on the lanes in mask, 0 elsewhere (masked-off lanes are not read)."""
    vty = _vector_type(context, arrty.dtype)
    ptr = _element_pointer(context, builder, arrty, arr, start)
    fn = _intrinsic_fn(builder, f"llvm.masked.load.{_suffix(vty)}.p0", vty,
                       [ptr.type, _I32, ir.VectorType(_I1, LANES), vty])
    align = ir.Constant(_I32, arrty.dtype.bitwidth // 8)
    return builder.call(fn, [ptr, align, _mask_vector(builder, mask), ir.Constant(vty, None)])


def _strided_load(context: Any, builder: Any, arrty: Any, arr: Any, start: Any, step: Any, mask: Any) -> Any:
    """src[start + l·step] on the lanes in mask, else 0: each lane reads a valid index (its own, or the first set
    lane's) and masked-off values are discarded."""
    vty = _vector_type(context, arrty.dtype)
    data = make_array(arrty)(context, builder, arr).data
    cttz = _intrinsic_fn(builder, "llvm.cttz.i64", ir.IntType(64), [ir.IntType(64), _I1])
    first = builder.call(cttz, [mask, ir.Constant(_I1, 0)])
    safe = builder.add(start, builder.mul(step, first))
    vec = ir.Constant(vty, None)
    for lane in range(LANES):
        inside = _lane_set(builder, mask, lane)
        index = builder.select(inside, builder.add(start, builder.mul(step, ir.Constant(start.type, lane))), safe)
        value = builder.select(inside, builder.load(builder.gep(data, [index])), ir.Constant(vty.element, 0.0))
        vec = builder.insert_element(vec, value, ir.Constant(_I32, lane))
    return vec


def _even_load(context: Any, builder: Any, arrty: Any, arr: Any, start: Any, mask: Any) -> Any:
    """src[start + 2·l] on the lanes in mask, else 0: one masked load of 2·LANES elements and a shuffle."""
    vty = _vector_type(context, arrty.dtype)
    wide = ir.VectorType(vty.element, 2 * LANES)
    lane_mask = _mask_vector(builder, mask)
    none = ir.Constant(ir.VectorType(_I1, LANES), None)
    evens = builder.shuffle_vector(  # element 2l is read when lane l is set; odd elements never (no read past a row)
        lane_mask, none, ir.Constant(ir.VectorType(_I32, 2 * LANES),
                                     [l // 2 if l % 2 == 0 else LANES for l in range(2 * LANES)]))
    ptr = _element_pointer(context, builder, arrty, arr, start)
    fn = _intrinsic_fn(builder, f"llvm.masked.load.v{2 * LANES}{_suffix(vty)[-3:]}.p0", wide,
                       [ptr.type, _I32, ir.VectorType(_I1, 2 * LANES), wide])
    both = builder.call(fn, [ptr, ir.Constant(_I32, arrty.dtype.bitwidth // 8), evens, ir.Constant(wide, None)])
    return builder.shuffle_vector(both, both, ir.Constant(ir.VectorType(_I32, LANES), [2 * l for l in range(LANES)]))


def _masked_store(context: Any, builder: Any, arrty: Any, arr: Any, start: Any, vec: Any, mask: Any) -> None:
    vty = vec.type
    ptr = _element_pointer(context, builder, arrty, arr, start)
    fn = _intrinsic_fn(builder, f"llvm.masked.store.{_suffix(vty)}.p0", ir.VoidType(),
                       [vty, ptr.type, _I32, ir.VectorType(_I1, LANES)])
    builder.call(fn, [vec, ptr, ir.Constant(_I32, arrty.dtype.bitwidth // 8), _mask_vector(builder, mask)])


def _get(context: Any, builder: Any, accty: Any, acc: Any) -> Any:
    vty = _vector_type(context, accty.dtype)
    ptr = builder.bitcast(make_array(accty)(context, builder, acc).data, vty.as_pointer())
    return builder.load(ptr)


def _set(context: Any, builder: Any, accty: Any, acc: Any, vec: Any) -> None:
    ptr = builder.bitcast(make_array(accty)(context, builder, acc).data, vec.type.as_pointer())
    builder.store(vec, ptr)


def _fma(builder: Any, a: Any, b: Any, c: Any) -> Any:
    fn = _intrinsic_fn(builder, f"llvm.fma.{_suffix(a.type)}", a.type, [a.type] * 3)
    return builder.call(fn, [a, b, c])


def _args(context: Any, builder: Any, sig: Any, args: Any, ints: tuple[int, ...]) -> list[Any]:
    """The call's arguments with those at ``ints`` (offsets, steps, masks) cast to int64."""
    return [context.cast(builder, v, t, types.int64) if k in ints else v
            for k, (v, t) in enumerate(zip(args, sig.args))]


def _update(context: Any, builder: Any, sig: Any, acc: Any, new: Any) -> Any:
    _set(context, builder, sig.args[0], acc, new)
    return context.get_dummy_value()


@intrinsic
def block(typingctx: Any, like: Any) -> Any:
    """A (LANES,) array of ``like``'s dtype on the stack: an accumulator. Allocate it in the function that uses it
    (a block handed to another function lives in memory)."""
    arrty = types.Array(like.dtype, 1, "C")

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr = cgutils.alloca_once(builder, _vector_type(context, like.dtype))
        ary = make_array(arrty)(context, builder)
        itemsize = context.get_constant(types.intp, like.dtype.bitwidth // 8)
        populate_array(ary, data=builder.bitcast(ptr, context.get_data_type(like.dtype).as_pointer()),
                       shape=[context.get_constant(types.intp, LANES)], strides=[itemsize], itemsize=itemsize,
                       meminfo=None)
        return ary._getvalue()

    return arrty(like), codegen


@intrinsic
def tile(typingctx: Any, like: Any, count: Any) -> Any:
    """A (count·LANES,) array of ``like``'s dtype on the stack: ``count`` blocks (a constant count), block k at
    offset k·LANES. The ``*_at`` operations address a block by its offset; where the offsets are constants (loops
    unrolled), LLVM keeps every block in a register of its own."""
    if not isinstance(count, types.IntegerLiteral):
        return None
    blocks = count.literal_value
    arrty = types.Array(like.dtype, 1, "C")

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        vty = _vector_type(context, like.dtype)
        ptr = cgutils.alloca_once(builder, ir.ArrayType(vty, blocks))
        ary = make_array(arrty)(context, builder)
        itemsize = context.get_constant(types.intp, like.dtype.bitwidth // 8)
        populate_array(ary, data=builder.bitcast(ptr, context.get_data_type(like.dtype).as_pointer()),
                       shape=[context.get_constant(types.intp, blocks * LANES)], strides=[itemsize],
                       itemsize=itemsize, meminfo=None)
        return ary._getvalue()

    return arrty(like, count), codegen


@intrinsic
def borrowed(typingctx: Any, arr: Any) -> Any:
    """arr without its reference count (no meminfo): a view that helpers inlined into a kernel's loops can take
    without an atomic increment and decrement per call. Valid while arr is alive (the kernel's argument)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ary = make_array(arr)(context, builder, args[0])
        ary.meminfo = context.get_constant_null(types.MemInfoPointer(arr.dtype))
        ary.parent = context.get_constant_null(types.pyobject)
        return ary._getvalue()

    return arr(arr), codegen


@intrinsic
def keep_alive(typingctx: Any, arr: Any) -> Any:
    """Nothing, but a use of arr: called after the loops, it keeps a local array that a ``borrowed`` view reads
    alive until then (numba frees an array after its last use)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return context.get_dummy_value()

    return types.none(arr), codegen


def _block_pointer(context: Any, builder: Any, arrty: Any, arr: Any, offset: Any) -> Any:
    """The block of a tile at element offset ``offset`` (a multiple of LANES), as a vector pointer."""
    data = make_array(arrty)(context, builder, arr).data
    return builder.bitcast(builder.gep(data, [offset]), _vector_type(context, arrty.dtype).as_pointer())


@intrinsic
def load_at(typingctx: Any, acc: Any, at: Any, src: Any, start: Any, mask: Any) -> Any:
    """acc[at + l] = src[start + l] on the lanes in mask, 0 elsewhere (acc a tile, at a block's offset)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        a, ao, s, st, mk = _args(context, builder, sig, args, (1, 3, 4))
        builder.store(_masked_load(context, builder, src, s, st, mk), _block_pointer(context, builder, acc, a, ao))
        return context.get_dummy_value()

    return types.none(acc, at, src, start, mask), codegen


@intrinsic
def store_at(typingctx: Any, acc: Any, at: Any, dst: Any, start: Any, mask: Any) -> Any:
    """dst[start + l] = acc[at + l] on the lanes in mask (acc a tile, at a block's offset)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        a, ao, d, st, mk = _args(context, builder, sig, args, (1, 3, 4))
        vec = builder.load(_block_pointer(context, builder, acc, a, ao))
        _masked_store(context, builder, dst, d, st, vec, mk)
        return context.get_dummy_value()

    return types.none(acc, at, dst, start, mask), codegen


@intrinsic
def stream_at(typingctx: Any, acc: Any, at: Any, dst: Any, start: Any) -> Any:
    """dst[start + l] = acc[at + l] on every lane, a non-temporal store (no read of the line it fills; dst + start
    aligned to the block's size)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        a, ao, d, st = _args(context, builder, sig, args, (1, 3))
        vec = builder.load(_block_pointer(context, builder, acc, a, ao))
        ptr = builder.bitcast(_element_pointer(context, builder, dst, d, st), vec.type.as_pointer())
        instr = builder.store(vec, ptr, align=64)
        instr.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(_I32, 1)]))
        return context.get_dummy_value()

    return types.none(acc, at, dst, start), codegen


@intrinsic
def store_fence(typingctx: Any) -> Any:
    """A full memory fence: the non-temporal stores before it are visible to every thread after it."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def fma_at(typingctx: Any, acc: Any, at: Any, u: Any, u_at: Any, v: Any, v_at: Any) -> Any:
    """acc[at + l] += u[u_at + l] · v[v_at + l] on every lane: three blocks of tiles (offsets multiples of LANES)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        a, ao, ub, uo, vb, vo = _args(context, builder, sig, args, (1, 3, 5))
        target = _block_pointer(context, builder, acc, a, ao)
        x = builder.load(_block_pointer(context, builder, u, ub, uo))
        y = builder.load(_block_pointer(context, builder, v, vb, vo))
        builder.store(_fma(builder, x, y, builder.load(target)), target)
        return context.get_dummy_value()

    return types.none(acc, at, u, u_at, v, v_at), codegen


@intrinsic
def add_at(typingctx: Any, acc: Any, at: Any, v: Any, v_at: Any) -> Any:
    """acc[at + l] += v[v_at + l] on every lane (blocks of tiles)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        a, ao, vb, vo = _args(context, builder, sig, args, (1, 3))
        target = _block_pointer(context, builder, acc, a, ao)
        y = builder.load(_block_pointer(context, builder, v, vb, vo))
        builder.store(builder.fadd(builder.load(target), y), target)
        return context.get_dummy_value()

    return types.none(acc, at, v, v_at), codegen


@intrinsic
def fma_vv_at(typingctx: Any, acc: Any, at: Any, u: Any, u_at: Any, v: Any, v_start: Any, mask: Any) -> Any:
    """acc[at + l] += u[u_at + l] · v[v_start + l]: u a block of a tile (every lane), v read on the lanes in mask
    (0 elsewhere)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        a, ao, ub, uo, vb, vs, mk = _args(context, builder, sig, args, (1, 3, 5, 6))
        target = _block_pointer(context, builder, acc, a, ao)
        x = builder.load(_block_pointer(context, builder, u, ub, uo))
        y = _masked_load(context, builder, v, vb, vs, mk)
        builder.store(_fma(builder, x, y, builder.load(target)), target)
        return context.get_dummy_value()

    return types.none(acc, at, u, u_at, v, v_start, mask), codegen


@intrinsic
def fill_at(typingctx: Any, acc: Any, at: Any, value: Any) -> Any:
    """acc[at + l] = value on every lane (acc a tile, at a block's offset)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        a, ao, v = _args(context, builder, sig, args, (1,))
        vec = _splat(builder, _vector_type(context, acc.dtype), context.cast(builder, v, sig.args[2], acc.dtype))
        builder.store(vec, _block_pointer(context, builder, acc, a, ao))
        return context.get_dummy_value()

    return types.none(acc, at, value), codegen


@intrinsic
def copy_at(typingctx: Any, dst: Any, at: Any, src: Any, src_at: Any) -> Any:
    """dst[at + l] = src[src_at + l] on every lane (blocks of tiles)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        d, do, s, so = _args(context, builder, sig, args, (1, 3))
        builder.store(builder.load(_block_pointer(context, builder, src, s, so)),
                      _block_pointer(context, builder, dst, d, do))
        return context.get_dummy_value()

    return types.none(dst, at, src, src_at), codegen


@intrinsic
def keep_at(typingctx: Any, acc: Any, at: Any, mask: Any) -> Any:
    """acc[at + l] = 0 on the lanes not in mask (acc a tile, at a block's offset)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        a, ao, mk = _args(context, builder, sig, args, (1, 2))
        target = _block_pointer(context, builder, acc, a, ao)
        vec = builder.load(target)
        builder.store(builder.select(_mask_vector(builder, mk), vec, ir.Constant(vec.type, None)), target)
        return context.get_dummy_value()

    return types.none(acc, at, mask), codegen


@intrinsic
def fma_window_at(typingctx: Any, acc: Any, at: Any, u: Any, u_at: Any, v: Any, v_at: Any, shift: Any) -> Any:
    """acc[at + l] += u[u_at + l] · v[v_at + shift + l] on every lane, v's lanes taken from its block at v_at and
    the block before (shift < 0) or after it (shift > 0): one constant shuffle of two registers (blocks of tiles;
    shift a constant, |shift| < LANES)."""
    if not isinstance(shift, types.IntegerLiteral) or not -LANES < shift.literal_value < LANES:
        return None
    step = shift.literal_value

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        a, ao, ub, uo, vb, vo, _ = _args(context, builder, sig, args, (1, 3, 5))
        target = _block_pointer(context, builder, acc, a, ao)
        x = builder.load(_block_pointer(context, builder, u, ub, uo))
        here = builder.load(_block_pointer(context, builder, v, vb, vo))
        if step == 0:
            y = here
        else:
            side = builder.add(vo, ir.Constant(vo.type, LANES if step > 0 else -LANES))
            other = builder.load(_block_pointer(context, builder, v, vb, side))
            low, high = (here, other) if step > 0 else (other, here)
            first = step if step > 0 else LANES + step  # lane l reads element first + l of (low, high)
            y = builder.shuffle_vector(low, high, ir.Constant(ir.VectorType(_I32, LANES),
                                                              [first + l for l in range(LANES)]))
        builder.store(_fma(builder, x, y, builder.load(target)), target)
        return context.get_dummy_value()

    return types.none(acc, at, u, u_at, v, v_at, shift), codegen


@intrinsic
def relu_at(typingctx: Any, acc: Any, at: Any) -> Any:
    """acc[at + l] = 0 where acc[at + l] < 0, on every lane (NaN stays NaN, as in torch.relu)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        a, ao = _args(context, builder, sig, args, (1,))
        target = _block_pointer(context, builder, acc, a, ao)
        vec = builder.load(target)
        zero = ir.Constant(vec.type, None)
        builder.store(builder.select(builder.fcmp_ordered("<", vec, zero), zero, vec), target)
        return context.get_dummy_value()

    return types.none(acc, at), codegen


@intrinsic
def fma_scalar_at(typingctx: Any, acc: Any, at: Any, weight: Any, src: Any, start: Any, mask: Any) -> Any:
    """acc[at + l] += weight · src[start + l], src read on the lanes in mask (0 elsewhere; acc a tile, at a block's
    offset)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        a, ao, w, s, st, mk = _args(context, builder, sig, args, (1, 4, 5))
        target = _block_pointer(context, builder, acc, a, ao)
        x = _masked_load(context, builder, src, s, st, mk)
        wv = _splat(builder, _vector_type(context, acc.dtype), context.cast(builder, w, sig.args[2], acc.dtype))
        builder.store(_fma(builder, wv, x, builder.load(target)), target)
        return context.get_dummy_value()

    return types.none(acc, at, weight, src, start, mask), codegen


@intrinsic
def fill(typingctx: Any, acc: Any, value: Any) -> Any:
    """acc[l] = value on every lane."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        v = context.cast(builder, args[1], sig.args[1], acc.dtype)
        return _update(context, builder, sig, args[0], _splat(builder, _vector_type(context, acc.dtype), v))

    return types.none(acc, value), codegen


@intrinsic
def load(typingctx: Any, acc: Any, src: Any, start: Any, mask: Any) -> Any:
    """acc[l] = src[start + l] on the lanes in mask, 0 elsewhere."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        a, s, st, mk = _args(context, builder, sig, args, (2, 3))
        return _update(context, builder, sig, a, _masked_load(context, builder, src, s, st, mk))

    return types.none(acc, src, start, mask), codegen


@intrinsic
def load_step(typingctx: Any, acc: Any, src: Any, start: Any, step: Any, mask: Any) -> Any:
    """acc[l] = src[start + l·step] on the lanes in mask, 0 elsewhere (lane by lane)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        a, s, st, sp, mk = _args(context, builder, sig, args, (2, 3, 4))
        return _update(context, builder, sig, a, _strided_load(context, builder, src, s, st, sp, mk))

    return types.none(acc, src, start, step, mask), codegen


@intrinsic
def fma(typingctx: Any, acc: Any, weight: Any, src: Any, start: Any, mask: Any) -> Any:
    """acc[l] += weight · src[start + l] on the lanes in mask."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        a, w, s, st, mk = _args(context, builder, sig, args, (3, 4))
        x = _masked_load(context, builder, src, s, st, mk)
        wv = _splat(builder, _vector_type(context, acc.dtype), context.cast(builder, w, sig.args[1], acc.dtype))
        return _update(context, builder, sig, a, _fma(builder, wv, x, _get(context, builder, acc, a)))

    return types.none(acc, weight, src, start, mask), codegen


@intrinsic
def fma_lane(typingctx: Any, acc: Any, weights: Any, lane: Any, src: Any, start: Any, mask: Any) -> Any:
    """acc[l] += weights[lane] · src[start + l] on the lanes in mask: the weight taken from a block held in
    registers (a constant ``lane`` after unrolling), so it is not reloaded from memory for every tap."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        a, wb, ln, s, st, mk = _args(context, builder, sig, args, (2, 4, 5))
        x = _masked_load(context, builder, src, s, st, mk)
        w = builder.extract_element(_get(context, builder, weights, wb), ln)
        wv = _splat(builder, _vector_type(context, acc.dtype), w)
        return _update(context, builder, sig, a, _fma(builder, wv, x, _get(context, builder, acc, a)))

    return types.none(acc, weights, lane, src, start, mask), codegen


@intrinsic
def fma_lane_even(typingctx: Any, acc: Any, weights: Any, lane: Any, src: Any, start: Any, mask: Any) -> Any:
    """acc[l] += weights[lane] · src[start + 2·l] on the lanes in mask (stride 2)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        a, wb, ln, s, st, mk = _args(context, builder, sig, args, (2, 4, 5))
        x = _even_load(context, builder, src, s, st, mk)
        w = builder.extract_element(_get(context, builder, weights, wb), ln)
        wv = _splat(builder, _vector_type(context, acc.dtype), w)
        return _update(context, builder, sig, a, _fma(builder, wv, x, _get(context, builder, acc, a)))

    return types.none(acc, weights, lane, src, start, mask), codegen


@intrinsic
def fma_even(typingctx: Any, acc: Any, weight: Any, src: Any, start: Any, mask: Any) -> Any:
    """acc[l] += weight · src[start + 2·l] on the lanes in mask (stride 2: a load of 2·LANES and a shuffle)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        a, w, s, st, mk = _args(context, builder, sig, args, (3, 4))
        x = _even_load(context, builder, src, s, st, mk)
        wv = _splat(builder, _vector_type(context, acc.dtype), context.cast(builder, w, sig.args[1], acc.dtype))
        return _update(context, builder, sig, a, _fma(builder, wv, x, _get(context, builder, acc, a)))

    return types.none(acc, weight, src, start, mask), codegen


@intrinsic
def fma_step(typingctx: Any, acc: Any, weight: Any, src: Any, start: Any, step: Any, mask: Any) -> Any:
    """acc[l] += weight · src[start + l·step] on the lanes in mask (lane by lane: for strides above 2)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        a, w, s, st, sp, mk = _args(context, builder, sig, args, (3, 4, 5))
        x = _strided_load(context, builder, src, s, st, sp, mk)
        wv = _splat(builder, _vector_type(context, acc.dtype), context.cast(builder, w, sig.args[1], acc.dtype))
        return _update(context, builder, sig, a, _fma(builder, wv, x, _get(context, builder, acc, a)))

    return types.none(acc, weight, src, start, step, mask), codegen


@intrinsic
def fma_vv(typingctx: Any, acc: Any, u: Any, u_start: Any, v: Any, v_start: Any, mask: Any) -> Any:
    """acc[l] += u[u_start + l] · v[v_start + l] on the lanes in mask."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        a, uu, us, vv, vs, mk = _args(context, builder, sig, args, (2, 4, 5))
        x = _masked_load(context, builder, u, uu, us, mk)
        y = _masked_load(context, builder, v, vv, vs, mk)
        return _update(context, builder, sig, a, _fma(builder, x, y, _get(context, builder, acc, a)))

    return types.none(acc, u, u_start, v, v_start, mask), codegen


@intrinsic
def fma_block(typingctx: Any, acc: Any, u: Any, v: Any, v_start: Any, mask: Any) -> Any:
    """acc[l] += u[l] · v[v_start + l] on the lanes in mask: u a block held in registers (loaded once, used for
    several taps)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        a, ub, vv, vs, mk = _args(context, builder, sig, args, (3, 4))
        y = _masked_load(context, builder, v, vv, vs, mk)
        return _update(context, builder, sig, a, _fma(builder, _get(context, builder, u, ub), y,
                                                      _get(context, builder, acc, a)))

    return types.none(acc, u, v, v_start, mask), codegen


@intrinsic
def fma_block_step(typingctx: Any, acc: Any, u: Any, v: Any, v_start: Any, v_step: Any, mask: Any) -> Any:
    """acc[l] += u[l] · v[v_start + l·v_step] on the lanes in mask (lane by lane)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        a, ub, vv, vs, vp, mk = _args(context, builder, sig, args, (3, 4, 5))
        y = _strided_load(context, builder, v, vv, vs, vp, mk)
        return _update(context, builder, sig, a, _fma(builder, _get(context, builder, u, ub), y,
                                                      _get(context, builder, acc, a)))

    return types.none(acc, u, v, v_start, v_step, mask), codegen


@intrinsic
def fma_vv_step(typingctx: Any, acc: Any, u: Any, u_start: Any, v: Any, v_start: Any, v_step: Any,
                mask: Any) -> Any:
    """acc[l] += u[u_start + l] · v[v_start + l·v_step] on the lanes in mask."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        a, uu, us, vv, vs, vp, mk = _args(context, builder, sig, args, (2, 4, 5, 6))
        x = _masked_load(context, builder, u, uu, us, mk)
        y = _strided_load(context, builder, v, vv, vs, vp, mk)
        return _update(context, builder, sig, a, _fma(builder, x, y, _get(context, builder, acc, a)))

    return types.none(acc, u, u_start, v, v_start, v_step, mask), codegen


def _spread_mask(builder: Any, mask: Any, rep: int) -> Any:
    """Bits 0, rep, 2·rep, … of mask moved to bits 0, 1, 2, …: the elements a repeated load needs."""
    bits = ir.Constant(mask.type, 0)
    for k in range(LANES // rep):
        bit = builder.and_(builder.lshr(mask, ir.Constant(mask.type, k * rep)), ir.Constant(mask.type, 1))
        bits = builder.or_(bits, builder.shl(bit, ir.Constant(mask.type, k)))
    return bits


def _repeat_gather(context: Any, builder: Any, arrty: Any, arr: Any, start: Any, rep: Any, phase: Any,
                   mask: Any) -> Any:
    """src[start + (phase + l) // rep] on the lanes in mask, 0 elsewhere, lane by lane."""
    vty = _vector_type(context, arrty.dtype)
    data = make_array(arrty)(context, builder, arr).data
    vec = ir.Constant(vty, None)
    for lane in range(LANES):
        inside = _lane_set(builder, mask, lane)
        index = builder.add(start, builder.sdiv(builder.add(phase, ir.Constant(start.type, lane)), rep))
        value = builder.load(builder.gep(data, [builder.select(inside, index, start)]))
        vec = builder.insert_element(vec, builder.select(inside, value, ir.Constant(vty.element, 0.0)),
                                     ir.Constant(_I32, lane))
    return vec


def _repeat_load_intrinsic(rep: int) -> Any:
    @intrinsic
    def load_rep(typingctx: Any, acc: Any, src: Any, start: Any, mask: Any) -> Any:
        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            a, s, st, mk = _args(context, builder, sig, args, (2, 3))
            part = _masked_load(context, builder, src, s, st, _spread_mask(builder, mk, rep))
            vec = builder.shuffle_vector(part, part, ir.Constant(ir.VectorType(_I32, LANES),
                                                                 [l // rep for l in range(LANES)]))
            zero = ir.Constant(vec.type, None)
            return _update(context, builder, sig, a, builder.select(_mask_vector(builder, mk), vec, zero))

        return types.none(acc, src, start, mask), codegen

    load_rep.__doc__ = (f"acc[l] = src[start + l // {rep}] on the lanes in mask, 0 elsewhere: one load (of the "
                        f"elements those lanes need) and a constant shuffle.")
    return load_rep


load_rep2 = _repeat_load_intrinsic(2)
load_rep4 = _repeat_load_intrinsic(4)


@intrinsic
def load_repeat(typingctx: Any, acc: Any, src: Any, start: Any, rep: Any, phase: Any, mask: Any) -> Any:
    """acc[l] = src[start + (phase + l) // rep] on the lanes in mask, 0 elsewhere (lane by lane)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        a, s, st, rp, ph, mk = _args(context, builder, sig, args, (2, 3, 4, 5))
        return _update(context, builder, sig, a, _repeat_gather(context, builder, src, s, st, rp, ph, mk))

    return types.none(acc, src, start, rep, phase, mask), codegen


@intrinsic
def store(typingctx: Any, acc: Any, dst: Any, start: Any, mask: Any) -> Any:
    """dst[start + l] = acc[l] on the lanes in mask."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        a, d, st, mk = _args(context, builder, sig, args, (2, 3))
        _masked_store(context, builder, dst, d, st, _get(context, builder, acc, a), mk)
        return context.get_dummy_value()

    return types.none(acc, dst, start, mask), codegen


def _pairwise_sum(builder: Any, vec: Any) -> Any:
    width = LANES
    while width > 1:
        width //= 2
        low = builder.shuffle_vector(vec, vec, ir.Constant(ir.VectorType(_I32, width), list(range(width))))
        high = builder.shuffle_vector(vec, vec, ir.Constant(ir.VectorType(_I32, width), list(range(width, 2 * width))))
        vec = builder.fadd(low, high)
    return builder.extract_element(vec, ir.Constant(_I32, 0))


@intrinsic
def total(typingctx: Any, acc: Any) -> Any:
    """Σ_l acc[l], pairwise in a fixed order (the same on every run)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return _pairwise_sum(builder, _get(context, builder, acc, args[0]))

    return acc.dtype(acc), codegen


@intrinsic
def total_at(typingctx: Any, acc: Any, at: Any) -> Any:
    """Σ_l acc[at + l] (acc a tile, at a block's offset), pairwise in a fixed order."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        a, ao = _args(context, builder, sig, args, (1,))
        return _pairwise_sum(builder, builder.load(_block_pointer(context, builder, acc, a, ao)))

    return acc.dtype(acc, at), codegen


@intrinsic
def prefetch(typingctx: Any, src: Any, start: Any) -> Any:
    """A hint to bring the cache line holding src[start] into the caches ahead of its loads (nothing is read: any
    index, even past the array's end, is harmless)."""
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        s, st = args[0], context.cast(builder, args[1], sig.args[1], types.int64)
        ptr = builder.gep(make_array(src)(context, builder, s).data, [st])
        fn = _intrinsic_fn(builder, "llvm.prefetch.p0", ir.VoidType(), [ptr.type, _I32, _I32, _I32])
        builder.call(fn, [ptr, ir.Constant(_I32, 0), ir.Constant(_I32, 3), ir.Constant(_I32, 1)])
        return context.get_dummy_value()

    return types.none(src, start), codegen

