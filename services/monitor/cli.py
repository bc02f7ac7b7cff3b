"""The `keel monitor` commands."""

from services.common.cli import serve_app

app = serve_app("monitor")
