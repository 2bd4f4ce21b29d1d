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

families = ["standard", "depthwise_separable", "grouped", "shuffled_grouped", "mixconv", "hetconv"]
rows = cz.compare(batch=2, in_channels=32, out_channels=32, size=16, families=families)
print(f"{'family':<22}{'MAC ratio':>10}{'speed-up':>10}{'fwd ms':>9}{'params':>8}")
for r in rows:
    print(f"{r.family:<22}{r.mac_ratio:>10.3f}{r.speed_ratio:>10.2f}{r.forward_ms:>9.3f}{r.params:>8,}")

# %%
# A budget in milliseconds for this layer: keep the families whose measured forward time fits, then take the
# one with the most capacity (parameters) among them.

budget_ms = 0.5 * next(r.forward_ms for r in rows if r.family == "standard")
fits = [r for r in rows if r.forward_ms <= budget_ms]
print(f"budget {budget_ms:.3f} ms; within it:", [r.family for r in fits])
if fits:
    print("most parameters within the budget:", max(fits, key=lambda r: r.params).family)
