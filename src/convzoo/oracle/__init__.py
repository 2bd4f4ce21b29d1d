"""The independent definition every layer is checked against: ``reference`` (NumPy, from the papers' equations,
never imports torch) and ``verify`` (runs a layer and its reference side by side)."""
