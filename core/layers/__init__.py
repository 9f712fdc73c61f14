"""The layer registry: a layer is a plug-in.

A layer module declares its name, its `<layer>.requested` and `<layer>.completed`
payloads (registered as events), how to build its executor, any projections of its own
and the checks a request must pass against the store, and calls `register`. Everything
else — the worker, `strata log`, recipes, `iterate`, `diff`, lineage, the HTTP job
endpoints — asks this registry, so adding a layer needs no edit elsewhere. `load_layers`
finds the plug-ins: every module of this package, every module that an installed
distribution names under the `strata.layers` entry-point group, and every module named in
STRATA_PLUGINS (comma-separated module names).

Layer modules must not import torch, diffusers or PyAV at module level: `strata log`
loads every layer to decode its events.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from strata.core.errors import InvalidInput
from strata.core.ledger.event_types import JobCompleted, JobRequest
from strata.core.ledger.events import registry as event_registry

if TYPE_CHECKING:
    from strata.core.models.pipelines import PipelineCache
    from strata.core.projections.base import Projection
    from strata.core.runtime.executor import Executor
    from strata.core.service import Strata

RequestCheck = Callable[["Strata", JobRequest], None]
"""What a request must satisfy beyond its own model, asked of the store (its assets exist
and are of the right media, sizes fit, masks fit, models are of the right kind): raises
InvalidInput, NotFound or ModelError, and writes nothing."""

ENTRY_POINT_GROUP = "strata.layers"
PLUGINS_VARIABLE = "STRATA_PLUGINS"
# Modules outside the layers that register event types of their own. Every process that
# opens a store must decode their events, or its projections would stop before them; so
# they hold only the payloads (the replay and the export that record them import the
# runtime, the provenance code and Pillow's writers, which a read command does not need).
EVENT_MODULES = ("strata.core.provenance.events", "strata.core.interop.events")


@dataclass(frozen=True)
class ExecutorResources:
    """What one worker's executors share: a pipeline cache (each model loads once per
    worker) and the device the worker was told to use (None: the best available)."""

    pipelines: PipelineCache
    device: str | None = None


@dataclass(frozen=True)
class Layer:
    name: str
    description: str
    requested: type[JobRequest]
    completed: type[JobCompleted]
    executor: Callable[[ExecutorResources], Executor]
    projections: tuple[Projection, ...] = ()
    # Asked by the layer's own request builder and by every face that takes a whole request
    # (the HTTP job endpoints), so a bad request is refused before it is appended, not
    # failed by a worker. None: the request model's own validation is all there is.
    check: RequestCheck | None = None


_layers: dict[str, Layer] = {}
_loaded = False


def register(layer: Layer) -> Layer:
    """Add a layer; its payloads must be registered as `<name>.requested` / `.completed`."""
    for payload, suffix in ((layer.requested, "requested"), (layer.completed, "completed")):
        event_type, _schema = event_registry.name_of(payload)
        if event_type != f"{layer.name}.{suffix}":
            raise ValueError(f"layer {layer.name!r}: {payload.__name__} is registered as "
                             f"{event_type!r}, not {layer.name}.{suffix}")
    existing = _layers.get(layer.name)
    if existing is not None and existing != layer:
        raise ValueError(f"layer {layer.name!r} registered twice")
    _layers[layer.name] = layer
    return layer


def load_layers() -> None:
    """Import every layer plug-in once (this package, entry points, STRATA_PLUGINS), and
    the other modules that register event types (EVENT_MODULES)."""
    global _loaded
    if _loaded:
        return
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
    for name in EVENT_MODULES:
        importlib.import_module(name)
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        entry_point.load()
    for name in (n.strip() for n in os.environ.get(PLUGINS_VARIABLE, "").split(",")):
        if name:
            try:
                importlib.import_module(name)
            except ImportError as error:
                raise InvalidInput(
                    f"{PLUGINS_VARIABLE} names the module {name!r}, which cannot be imported: "
                    f"{error}") from error
    _loaded = True


def all_layers() -> list[Layer]:
    load_layers()
    return [_layers[name] for name in sorted(_layers)]


def names() -> list[str]:
    return [layer.name for layer in all_layers()]


def get(name: str) -> Layer:
    load_layers()
    try:
        return _layers[name]
    except KeyError:
        raise InvalidInput(
            f"no layer named {name!r}; layers: {', '.join(sorted(_layers))}") from None


def of_event_type(event_type: str) -> Layer | None:
    """The layer whose request or completion `event_type` is, if any."""
    load_layers()
    name, _, kind = event_type.partition(".")
    layer = _layers.get(name)
    return layer if layer is not None and kind in ("requested", "completed") else None


def of_request(request: JobRequest) -> Layer:
    for layer in all_layers():
        if isinstance(request, layer.requested):
            return layer
    raise InvalidInput(f"{type(request).__name__} is not the request of a registered layer")


def check(strata: Strata, request: JobRequest) -> None:
    """Refuse a request its layer's checks refuse (see `Layer.check`); nothing is written."""
    layer = of_request(request)
    if layer.check is not None:
        layer.check(strata, request)


def projections() -> tuple[Projection, ...]:
    """The projections that layers contribute beside the built-in ones."""
    return tuple(p for layer in all_layers() for p in layer.projections)


def build_executors(
    chosen: Sequence[str] | None = None, device: str | None = None
) -> dict[str, Executor]:
    """The executors one worker runs (every registered layer by default), sharing one
    pipeline cache so that each model loads once."""
    from strata.core.models.pipelines import PipelineCache

    wanted = list(chosen) if chosen else names()
    layers = [get(name) for name in wanted]
    resources = ExecutorResources(PipelineCache(), device)
    return {layer.name: layer.executor(resources) for layer in layers}
