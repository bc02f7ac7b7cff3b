"""The `keel inference` commands."""

from services.common.cli import serve_app

app = serve_app("inference")
