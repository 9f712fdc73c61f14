"""One module per layer: its request model, its events and its executor.

Importing this package registers every layer's event types, which readers and
projections need before they can decode a layer's events.
"""

from strata.core.layers import generation, selection
from strata.core.models.pipelines import PipelineCache
from strata.core.runtime.executor import Executor

EXECUTOR_LAYERS = ("generation", "selection")


def build_executors(
    layers: tuple[str, ...] = EXECUTOR_LAYERS, device: str | None = None
) -> dict[str, Executor]:
    """The executors a worker runs, sharing one pipeline cache (each model loads once)."""
    unknown = set(layers) - set(EXECUTOR_LAYERS)
    if unknown:
        from strata.core.errors import InvalidInput

        raise InvalidInput(
            f"no executor for layer(s) {', '.join(sorted(unknown))}; "
            f"layers with executors: {', '.join(EXECUTOR_LAYERS)}"
        )
    pipelines = PipelineCache()
    every: dict[str, Executor] = {
        "generation": generation.GenerationExecutor(pipelines, device=device),
        "selection": selection.SelectionExecutor(),
    }
    return {layer: every[layer] for layer in layers}


__all__ = ["EXECUTOR_LAYERS", "build_executors", "generation", "selection"]
