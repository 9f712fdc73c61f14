"""Which tool wrote an imported file's metadata, and its recipe read from it.

`read_embedded` never fails an import: whatever a file holds — a broken JSON, a graph
with loops, a 50 MB chunk — it returns the recipe it could read, or one that records
the raw metadata and why it could not be parsed, or None when the file holds no metadata
of a known tool.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from strata.core.interop import a1111, comfyui, fooocus_swarm_novelai, invokeai
from strata.core.interop.chunks import MAX_CHUNK_BYTES, TextChunks, read_text_chunks
from strata.core.interop.recipe import EmbeddedRecipe, Parsed

Parser = Callable[[dict[str, str]], Parsed]
MAX_ERROR = 500  # characters of a parse error kept in the record


def detect(texts: dict[str, str]) -> tuple[str, Parser, tuple[str, ...]] | None:
    """The format of the metadata, its parser and the chunks that parser reads."""
    parameters = texts.get("parameters", "").lstrip()
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


def read_embedded(path: Path, media_type: str) -> dict[str, Any] | None:
    """The recipe embedded in the file at `path`, as `asset.imported` records it."""
    try:
        chunks = read_text_chunks(path, media_type)
    except Exception as error:  # the file was inspected already; a reader's bug is no reason
        return _unreadable(error)
    found = detect(chunks.texts)
    if found is None:
        return None
    name, parser, needed = found
    recipe = EmbeddedRecipe(format=name, raw=chunks.texts, truncated=chunks.truncated)
    cut = [chunk for chunk in needed if chunk in chunks.truncated]
    if cut:
        return recipe.model_copy(update={"error": _too_large(cut[0], chunks)}).record()
    try:
        parsed = parser(chunks.texts)
    except Exception as error:  # hostile or broken metadata never blocks an import
        return recipe.model_copy(update={"error": _message(name, error)}).record()
    return recipe.model_copy(update={
        "tool": parsed.tool, "tool_version": parsed.tool_version, "passes": parsed.passes,
    }).record()


def _too_large(chunk: str, chunks: TextChunks) -> str:
    return (f"the {chunk!r} metadata is {chunks.truncated[chunk]:,} bytes, over the bound of "
            f"{MAX_CHUNK_BYTES:,}: kept truncated, not parsed")


def _message(name: str, error: Exception) -> str:
    what = "invalid JSON" if isinstance(error, json.JSONDecodeError) else type(error).__name__
    return f"the {name} metadata could not be parsed ({what}): {error}"[:MAX_ERROR]


def _unreadable(error: Exception) -> dict[str, Any]:
    return EmbeddedRecipe(format="unknown", error=_message("file's", error)).record()
