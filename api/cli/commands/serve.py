"""`strata serve`: the HTTP API (and the web page) over this store, with uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from strata.api.cli.app import app, err_console, open_strata
from strata.core.errors import InvalidInput


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="the address to bind to")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="the port to listen on", min=0, max=65535)] = 8000,
) -> None:
    """Serve the HTTP API and the web page. Off the loopback address, a token is always
    required (`strata token create`)."""
    import uvicorn

    from strata.api.http.app import create_app
    from strata.api.http.settings import HttpSettings
    from strata.core.auth import tokens

    http = HttpSettings(host=host)
    strata = open_strata()
    try:
        if not http.loopback and not tokens.any_token(strata.store.engine):
            raise InvalidInput(
                f"refusing to serve on {host} with no token: anyone who can reach it could "
                "read and write the store. Create one first with `strata token create "
                "--scope admin --name NAME`, or serve on 127.0.0.1")
        settings = strata.store.settings
    finally:
        strata.store.close()
    err_console.print(f"serving the store at {settings.resolved_home} on http://{host}:{port}/")
    uvicorn.run(create_app(settings, http), host=host, port=port, log_level="info")
