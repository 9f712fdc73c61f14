"""Which tool wrote an imported file's metadata, and its recipe read from it.

`read_embedded` never fails an import: whatever a file holds — a broken JSON, a graph
with loops, a 50 MB chunk, a forged C2PA manifest — it returns the recipe it could read,
or one that records the raw metadata and why it could not be parsed, or None when the
file holds no metadata of a known tool and no Content Credentials.

Strata's own exports (format `strata`) carry the provenance JSON of the store they were
exported from: in a `strata` PNG chunk, in XMP for JPEG and WebP, or for video and audio
in a sidecar `<file>.strata.json` beside the imported file (used only when it names the
file's digest). The exported asset's step is kept whole with that asset's digest. A file
carrying a C2PA manifest store keeps it, with what c2pa-python's Reader says of it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from strata.core.interop import a1111, comfyui, fooocus_swarm_novelai, invokeai
from strata.core.interop.chunks import (
    MAX_CHUNK_BYTES,
    SIDECAR_FORMAT,
    STRATA_KEY,
    TextChunks,
    carries_c2pa,
    read_text_chunks,
)
from strata.core.interop.recipe import (
    FROM_ANOTHER_STORE,
    RECONSTRUCTED,
    ContentCredentials,
    EmbeddedRecipe,
    Parsed,
)
from strata.core.ledger.event_types import DIGEST_PATTERN

Parser = Callable[[dict[str, str]], Parsed]
MAX_ERROR = 500  # characters of a parse error kept in the record
MAX_FAILURES = 100  # C2PA validation failures kept in the record
SIDECAR_KEY = "sidecar"  # the raw text of a video's or audio file's export sidecar
PROVENANCE_FORMAT = "strata-provenance"  # core.provenance.ancestry.FORMAT


def detect(texts: dict[str, str]) -> tuple[str, Parser, tuple[str, ...]] | None:
    """The format of the metadata, its parser and the chunks that parser reads."""
    parameters = texts.get("parameters", "").lstrip()
    if STRATA_KEY in texts:  # before A1111: a Strata export carries its parameters too
        return "strata", _strata, (STRATA_KEY,)
    if parameters.startswith("{") and "sui_image_params" in parameters:
        return "swarmui", fooocus_swarm_novelai.swarmui, ("parameters",)
    if "invokeai_metadata" in texts:
        return "invokeai", invokeai.parse, ("invokeai_metadata",)
    if "prompt" in texts or "workflow" in texts:
        return "comfyui", comfyui.parse, ("prompt",)
    if "Comment" in texts and texts.get("Software", "").startswith("NovelAI"):
        return "novelai", fooocus_swarm_novelai.novelai, ("Comment",)
    if parameters.startswith("{"):
        return "fooocus", fooocus_swarm_novelai.fooocus, ("parameters",)
    if parameters:
        return "a1111", a1111.parse, ("parameters",)
    return None


def read_embedded(path: Path, media_type: str, digest: str,
                  sidecar: Path | None = None) -> dict[str, Any] | None:
    """The recipe embedded in the file at `path` (whose bytes have `digest`), or in the
    export `sidecar` beside it, and its Content Credentials, as `asset.imported` records
    them."""
    recipe = _recipe(path, media_type, digest, sidecar)
    credentials = content_credentials(path)
    if credentials is not None:
        recipe = (recipe or EmbeddedRecipe(format="c2pa")).model_copy(
            update={"content_credentials": credentials})
    return recipe.record() if recipe is not None else None


def _recipe(path: Path, media_type: str, digest: str,
            sidecar: Path | None) -> EmbeddedRecipe | None:
    try:
        chunks = read_text_chunks(path, media_type)
    except Exception as error:  # the file was inspected already; a reader's bug is no reason
        return _unreadable(error)
    found = detect(chunks.texts)
    if found is None:  # video and audio exports carry their provenance beside them
        return _from_sidecar(sidecar, digest) if sidecar is not None else None
    name, parser, needed = found
    recipe = EmbeddedRecipe(format=name, raw=chunks.texts, truncated=chunks.truncated)
    cut = [chunk for chunk in needed if chunk in chunks.truncated]
    if cut:
        return recipe.model_copy(update={"error": _too_large(cut[0], chunks)})
    try:
        parsed = parser(chunks.texts)
    except Exception as error:  # hostile or broken metadata never blocks an import
        return recipe.model_copy(update={"error": _message(name, error)})
    return _with(recipe, parsed)


def _with(recipe: EmbeddedRecipe, parsed: Parsed) -> EmbeddedRecipe:
    return recipe.model_copy(update={
        "tool": parsed.tool, "tool_version": parsed.tool_version, "passes": parsed.passes,
        "original_digest": parsed.original_digest, "step": parsed.step,
        "note": FROM_ANOTHER_STORE if parsed.step is not None else RECONSTRUCTED,
    })


def _strata(texts: dict[str, str]) -> Parsed:
    return _strata_export(json.loads(texts[STRATA_KEY]))


def _strata_export(document: Any) -> Parsed:
    """The recipe of a Strata export from its provenance JSON: the exported asset's digest
    and the step that made it, with that asset's output only."""
    if not isinstance(document, dict) or document.get("format") != PROVENANCE_FORMAT:
        raise ValueError(f"not Strata's provenance JSON (format {PROVENANCE_FORMAT!r})")
    asset = document.get("asset")
    if not isinstance(asset, str) or not re.fullmatch(DIGEST_PATTERN, asset):
        raise ValueError(f"the exported asset's digest is not a digest: {str(asset)[:80]!r}")
    step_id = next((n.get("step") for n in _dicts(document.get("assets"))
                    if n.get("digest") == asset), None)
    step = next((s for s in _dicts(document.get("steps")) if s.get("id") == step_id), None)
    if step is None:
        raise ValueError(f"the provenance names no step that made {asset}")
    outputs = [o for o in _dicts(step.get("outputs")) if o.get("digest") == asset]
    return Parsed(tool="strata", tool_version=None, original_digest=asset,
                  step={**step, "outputs": outputs})


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON array (a hostile document may hold anything there)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _from_sidecar(sidecar: Path, digest: str) -> EmbeddedRecipe | None:
    """The recipe in an export's JSON sidecar, if there is one; an error when it does not
    describe these bytes."""
    recipe = EmbeddedRecipe(format="strata")
    try:
        if not sidecar.is_file():  # (a FIFO or a folder of that name is no sidecar)
            return None
        with sidecar.open("rb") as file:
            data = file.read(MAX_CHUNK_BYTES + 1)
        text = data[:MAX_CHUNK_BYTES].decode("utf-8", "replace")
        recipe = recipe.model_copy(update={"raw": {SIDECAR_KEY: text}})
        if len(data) > MAX_CHUNK_BYTES:
            size = sidecar.stat().st_size
            return recipe.model_copy(update={"truncated": {SIDECAR_KEY: size}, "error": (
                f"the export sidecar {sidecar.name} is {size:,} bytes, over the bound of "
                f"{MAX_CHUNK_BYTES:,}: kept truncated, not parsed")})
        document = json.loads(text)
        if not isinstance(document, dict) or document.get("format") != SIDECAR_FORMAT:
            raise ValueError(f"not a Strata export sidecar (format {SIDECAR_FORMAT!r})")
        if document.get("digest") != digest:
            raise ValueError(f"it describes other bytes ({str(document.get('digest'))[:80]}), "
                             "not this file")
        return _with(recipe, _strata_export(document.get("provenance")))
    except Exception as error:  # an unreadable or foreign sidecar never blocks an import
        return recipe.model_copy(update={"error": _message(f"sidecar {sidecar.name}", error)})


def content_credentials(path: Path) -> ContentCredentials | None:
    """The C2PA manifest store of the file and what c2pa-python's Reader says of it, with
    no trust anchor; None when the file carries none. Without c2pa-python (or for a media
    type it cannot read) it is recorded as not checked, and why."""
    from strata.core.errors import InvalidInput, NotFound
    from strata.core.interop import c2pa_credentials

    try:
        if not carries_c2pa(path):
            return None
        found = c2pa_credentials.read(path, anchor=None)
    except InvalidInput as error:  # c2pa-python missing, or a media type it cannot read
        return ContentCredentials(checked=False, error=str(error)[:MAX_ERROR])
    except NotFound:
        return None  # the mark was in the picture's bytes, not a manifest store
    except Exception as error:  # a broken or hostile manifest never blocks an import
        return ContentCredentials(checked=True, error=str(error)[:MAX_ERROR])
    store = json.dumps(found.store, ensure_ascii=False, sort_keys=True)
    within = len(store) <= MAX_CHUNK_BYTES
    return ContentCredentials(
        checked=True, state=found.state, active_manifest=found.store.get("active_manifest"),
        failures=found.failures[:MAX_FAILURES],
        manifest_store=found.store if within else None, manifest_store_size=len(store),
        manifest_store_truncated=None if within else store[:MAX_CHUNK_BYTES])


def _too_large(chunk: str, chunks: TextChunks) -> str:
    return (f"the {chunk!r} metadata is {chunks.truncated[chunk]:,} bytes, over the bound of "
            f"{MAX_CHUNK_BYTES:,}: kept truncated, not parsed")


def _message(name: str, error: Exception) -> str:
    what = "invalid JSON" if isinstance(error, json.JSONDecodeError) else type(error).__name__
    return f"the {name} metadata could not be parsed ({what}): {error}"[:MAX_ERROR]


def _unreadable(error: Exception) -> EmbeddedRecipe:
    return EmbeddedRecipe(format="unknown", error=_message("file's", error))
