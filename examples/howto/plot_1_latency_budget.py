"""
Choose a convolution for a latency budget
=========================================

How-to. ``convzoo.compare`` builds every family on one layer shape, times it, and reports its MACs relative to
the standard conv (``mac_ratio``) and its speed-up over it (``speed_ratio`` = standard time / family time;
above 1 is faster). MACs are not time: pick by the measured columns, on your machine.
"""

# %%
# A small layer keeps the build quick; use your real shape (and ``device="cuda"``) when choosing for real.
# The times below are this build machine's, measured while the site was built.

import convzoo as cz

families = ["standard", "depthwise_separable", "grouped", "shuffled_grouped", "mixconv",
            "hetconv"]
rows = cz.compare(batch=2, in_channels=32, out_channels=32, size=16, families=families)
print(f"{'family':<22}{'MAC ratio':>10}{'speed-up':>10}{'fwd ms':>9}{'params':>8}")
for r in rows:
    print(f"{r.family:<22}{r.mac_ratio:>10.3f}{r.speed_ratio:>10.2f}"
          f"{r.forward_ms:>9.3f}{r.params:>8,}")

# %%
# A budget in milliseconds for this layer: keep the families whose measured forward time fits, then take the
# one with the most capacity (parameters) among them; between equal parameter counts (grouped and
# shuffled_grouped), the faster one.


def choose(rows: list[cz.CompareRow], budget_ms: float) -> cz.CompareRow | None:
    """The row with the most parameters within ``budget_ms``, or None."""
    fits = [r for r in rows if r.forward_ms <= budget_ms]
    print(f"budget {budget_ms:.3f} ms; within it:", [r.family for r in fits])
    return max(fits, key=lambda r: (r.params, -r.forward_ms), default=None)


# %%
# Your budget comes from your application. Here it is put halfway between the fastest family and the standard
# conv of the table above, so that there is a decision to make on every machine; where the standard conv is
# itself the fastest, it is the only one within the budget, and the answer is to keep it.

standard_ms = next(r.forward_ms for r in rows if r.family == "standard")
fastest_ms = min(r.forward_ms for r in rows)
choice = choose(rows, fastest_ms + 0.5 * (standard_ms - fastest_ms))
print("most parameters within the budget:", choice.family, f"({choice.params:,} params)")

# %%
# When nothing fits — a budget below the fastest row, here half of it — no convolution family of this shape
# meets it, and swapping the family is not the fix: shrink what the layer computes (fewer channels, as MobileNet's
# width multiplier α does; a smaller input, its resolution multiplier ρ; a stride), or change how it runs (more
# inputs per call, channels-last, int8 on XNNPACK as in the [int8 how-to](plot_4_int8_xnnpack.md)), and time
# again on the device that will run it.

choice = choose(rows, 0.5 * fastest_ms)
print(choice.family if choice else "nothing fits: shrink the layer or run it differently")
