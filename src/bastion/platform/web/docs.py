"""`/api/v1/docs`: the API's documentation, with every asset served by the appliance.

Swagger UI comes from the `swagger-ui-py` package and is served under
`/static/swagger-ui`; the page starts it from `/static/api-docs.js`, so it needs no
other host and no inline script, and works under the appliance's CSP.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from fastapi import Request, Response
from fastapi.staticfiles import StaticFiles

from bastion.platform.web.routing import Router
from bastion.platform.web.templating import templates

DOCS_URL = "/api/v1/docs"
OPENAPI_URL = "/api/v1/openapi.json"
ASSETS_URL = "/static/swagger-ui"
ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js")

router = Router(include_in_schema=False)


def swagger_assets() -> StaticFiles:
    """The Swagger UI files as the package ships them (checked when the app is built; the
    package is found, not imported: its code is for other frameworks)."""
    spec = find_spec("swagger_ui")
    locations = list(spec.submodule_search_locations or []) if spec else []
    folder = Path(locations[0] if locations else ".") / "static"
    missing = [name for name in ASSETS if not (folder / name).is_file()]
    if missing:
        raise RuntimeError(f"swagger-ui-py lacks {', '.join(missing)}; reinstall the appliance")
    return StaticFiles(directory=folder)


@router.get(DOCS_URL)
def api_docs(request: Request) -> Response:
    return templates.TemplateResponse(
        request, "api_docs.html", {"assets": ASSETS_URL, "openapi_url": OPENAPI_URL}
    )
