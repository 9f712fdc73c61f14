"""The body of each layer's job endpoint, made from the layer's request model.

The body is the request model less what the server sets (the job id and the fields an
iteration sets), with every `ModelRef` (name, path, digest of a model's files) replaced
by the registered model's name: a client names a model, the store says where its files
are and what they hash to. So the OpenAPI document shows each layer's own parameters,
and a new layer gets its endpoint without an edit.
"""

from __future__ import annotations

import copy
import types
from functools import cache
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError, create_model

from strata.core.errors import InvalidInput
from strata.core.ledger.event_types import JobRequest
from strata.core.ledger.events import explain, registry
from strata.core.models import registry as models
from strata.core.models.diffusion import ModelRef
from strata.core.runtime import jobs
from strata.core.service import Strata

SERVER_SET = frozenset({"job_id", "iterates", "changes", "parent"})


def _has_model_ref(tp: Any) -> bool:
    if tp is ModelRef:
        return True
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return any(_has_model_ref(f.annotation) for f in tp.model_fields.values())
    return any(_has_model_ref(arg) for arg in get_args(tp))


def _public(tp: Any) -> Any:
    """`tp` with every ModelRef in it replaced by a model's name."""
    if not _has_model_ref(tp):
        return tp
    if tp is ModelRef:
        return str
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return _body_of(tp, frozenset())
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        return Union[tuple(_public(arg) for arg in args)]  # noqa: UP007 (built at run time)
    return origin[tuple(_public(arg) for arg in args)]  # list[...], dict[...], tuple[...]


@cache
def _body_of(model: type[BaseModel], left_out: frozenset[str]) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name in left_out:
            continue
        fields[name] = (_public(info.annotation), copy.copy(info))
    return create_model(f"{model.__name__}Body", __doc__=model.__doc__, **fields)


def body_model(request_model: type[JobRequest]) -> type[BaseModel]:
    return _body_of(request_model, SERVER_SET)  # type: ignore[arg-type]


def _resolved(strata: Strata, tp: Any, value: Any) -> Any:
    """`value` (body data for type `tp`) with each model name made the registered
    ModelRef."""
    if value is None or not _has_model_ref(tp):
        return value
    if tp is ModelRef:
        with strata.view() as conn:
            row = models.lookup(conn, value)
        return {"name": row.name, "path": row.path, "digest": row.digest}
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return {name: _resolved(strata, tp.model_fields[name].annotation, item)
                if name in tp.model_fields else item for name, item in value.items()}
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        chosen = next((a for a in args if a is not type(None) and _has_model_ref(a)), None)
        return _resolved(strata, chosen, value)
    if origin is list and isinstance(value, list):
        return [_resolved(strata, args[0], item) for item in value]
    return value


def make_request(strata: Strata, request_model: type[JobRequest],
                 body: BaseModel) -> JobRequest:
    """The layer's request from an endpoint's body: a new job id, models resolved from
    the registry (a cfg left out is the model's recommended one, if it has one), every
    check of the request model; InvalidInput when one fails."""
    data = _resolved(strata, request_model, body.model_dump(exclude_unset=False))
    model = data.get("model")
    if "cfg" in request_model.model_fields and "cfg" not in body.model_fields_set and model:
        # Left out: the model's recommended guidance, as the command line takes it.
        # An edit's operation (inpaint, img2img, …), else the layer (generation).
        operation = str(data.get("operation") or registry.name_of(request_model)[0]
                        .split(".")[0])
        recommended = models.recommended_cfg(model["name"], model["path"], operation)
        if recommended is not None:
            data["cfg"] = recommended
    try:
        return request_model.model_validate({**data, "job_id": jobs.new_job_id()})
    except ValidationError as error:
        raise InvalidInput(f"invalid {request_model.__name__} request: {explain(error)}") \
            from error
