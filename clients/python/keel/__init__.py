"""Keel's contracts (generated stubs under keel.<package>.v1) and the Python client
(keel.client). Written by `make protos`."""
