"""The one part of keel-suite that pyproject.toml cannot declare stably: the monitor's
per-row loops in C (ADR 0013). ``-ffp-contract=off``: no fused multiply-add, so that a
value's grid cell rounds as numpy rounds it."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "services.monitor._kernels",
            sources=["services/monitor/_kernels.c"],
            extra_compile_args=["-O2", "-ffp-contract=off"],
        )
    ]
)
