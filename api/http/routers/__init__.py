"""One module per resource. Every module here that defines `router: APIRouter` is
included by the app factory, so a new module needs no edit elsewhere."""
