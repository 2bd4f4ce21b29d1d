"""The graphs torch.compile captures, for tests that check which ops a compiled layer runs (shared by the
compiled-op tests)."""

from __future__ import annotations

import torch


def recording_backend(graphs: list[torch.fx.GraphModule]):
    """A torch.compile backend that keeps each graph dynamo captured and runs it as captured."""
    def backend(gm: torch.fx.GraphModule, example_inputs):
        graphs.append(gm)
        return gm.forward

    return backend


def call_targets(graphs: list[torch.fx.GraphModule]) -> list[str]:
    """The functions and ops the graphs call, in order."""
    return [str(n.target) for gm in graphs for n in gm.graph.nodes if n.op == "call_function"]
