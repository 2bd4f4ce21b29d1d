"""The independent definition every layer is checked against: ``reference`` (NumPy, from the papers' equations,
never imports torch). Below the layers: a family file calls it for its ``reference_output``; ``convzoo.verify``
runs a layer and its reference side by side."""
