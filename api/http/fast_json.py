"""The JSON response of the routes that send what they built (`show`, the lineage graph):
Starlette's `JSONResponse` encoded by orjson — the same document (only a float's exponent
may be written differently: 1e-7 for 1e-07)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        # The standard encoder costs these routes many times what orjson does. What orjson
        # refuses (an integer past 64 bits, a key that is not a string) goes to the
        # standard encoder, as before.
        try:
            return orjson.dumps(content)
        except orjson.JSONEncodeError:
            return super().render(content)
