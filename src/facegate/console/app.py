"""The oversight console: server-rendered pages mounted at ``/console`` on the API's app.

It is another front door, like the CLI: it reads through governance and the store, and
changes state only through the governance functions the CLI calls, which audit each change
in its own transaction. Nothing here is a Rekognition request: no SigV4, and nothing under
``/console`` reaches the gate. Assets are served from the package; no page loads anything
from another site.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from facegate.console import accuracy_pages, admin_pages, audit_pages, overview_pages, review_pages, session_pages
from facegate.console.auth import Cookies, secret_for_data_dir
from facegate.console.chain import ChainWatch
from facegate.console.context import Console
from facegate.governance.policy import Policies
from facegate.governance.rejections import Rejection
from facegate.store.database import Store
from facegate.store.secrets import SecretBox


def create_console(
    store: Store, secrets: SecretBox, data_dir: Path, reject: Callable[[Rejection], None], reports_dir: Path,
) -> tuple[Starlette, Console]:
    """The console's ASGI app (to mount at ``/console``) and its shared state.
    ``reject`` records refused console requests (the server's rejection log)."""
    console = Console(store, secrets, Policies(store, data_dir / "packs"), Cookies(secret_for_data_dir(data_dir)),
                      reject, reports_dir, ChainWatch(store, data_dir))
    routes = [
        *session_pages.routes(console),
        *overview_pages.routes(console),
        *audit_pages.routes(console),
        *admin_pages.routes(console),
        *review_pages.routes(console),
        *accuracy_pages.routes(console),
        Mount("/static", StaticFiles(packages=[("facegate.console", "static")]), name="static"),
    ]
    return Starlette(routes=routes), console
