"""Scripts run by third-party clients in their own venv (.venv-compat), never imported
by the suite: tritonclient registers the same `inference.*` proto names as Keel's stubs."""
