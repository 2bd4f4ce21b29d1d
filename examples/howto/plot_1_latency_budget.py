"""
Choose a convolution for a latency budget
=========================================

How-to. ``convzoo.compare`` builds every family on one layer shape, times it, and reports its MACs and measured
time relative to the standard conv. MACs are not time: pick by the measured column, on your machine.
"""

# %%
# A small layer keeps the build quick; use your real shape (and ``device="cuda"``) when choosing for real.

import convzoo as cz

families = ["standard", "depthwise_separable", "grouped", "shuffled_grouped", "mixconv", "hetconv"]
rows = cz.compare(batch=2, in_channels=32, out_channels=32, size=16, families=families, repeats=5)
print(f"{'family':<22}{'MAC ratio':>10}{'time ratio':>12}{'fwd ms':>9}")
for r in rows:
    print(f"{r.family:<22}{r.mac_ratio:>10.3f}{r.speed_ratio:>12.2f}{r.forward_ms:>9.3f}")

# %%
# Keep the families whose measured time fits the budget, then take the one with the most capacity
# (parameters) among them:

budget = 1.0  # × the standard conv's forward time
fits = [r for r in rows if r.speed_ratio <= budget]
best = max(fits, key=lambda r: r.params)
print("within budget:", [r.family for r in fits], "→ most parameters:", best.family)
