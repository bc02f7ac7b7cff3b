"""The one part of keel-suite that pyproject.toml cannot declare stably: its loops in C,
the monitor's per-row counting (ADR 0013) and the inference service's tree walk (ADR
0014). ``-ffp-contract=off``: no fused multiply-add, so that a value's grid cell rounds
as numpy rounds it, and a margin adds up as XGBoost's does."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "services.monitor._kernels",
            sources=["services/monitor/_kernels.c"],
            extra_compile_args=["-O2", "-ffp-contract=off"],
        ),
        Extension(
            "services.inference._trees",
            sources=["services/inference/_trees.c"],
            extra_compile_args=["-O2", "-ffp-contract=off"],
        ),
    ]
)
