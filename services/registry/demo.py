"""The demo model ``make run`` loads: a small XGBoost classifier on synthetic churn-like
data, registered through the Python client and promoted to ``production``."""

from __future__ import annotations

from keel.client import Keel, NotFound

DEMO_MODEL = "demo-churn"


def load_demo(registry: str) -> str:
    """Register and promote the demo model unless ``production`` already holds one."""
    import numpy as np
    import xgboost
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    with Keel(registry=registry, user="keel-demo") as keel:
        try:
            held = keel.registry.get_alias(DEMO_MODEL, "production")
            return f"demo model '{DEMO_MODEL}' already in production (version {held.version})"
        except NotFound:
            pass
        x, y = make_classification(n_samples=2000, n_features=6, n_informative=4, random_state=7)
        x_train, x_test, y_train, y_test = train_test_split(
            x.astype(np.float32), y, test_size=0.25, random_state=7
        )
        model = xgboost.XGBClassifier(n_estimators=50, max_depth=4).fit(x_train, y_train)
        version = keel.log_model(
            model,
            DEMO_MODEL,
            x_train,
            y_train,
            x_test,
            y_test,
            objectives=["f1 >= 0.75"],
            description="Demo: synthetic churn classifier",
            cv=None,
        )
        keel.promote(DEMO_MODEL, version.version, "production")
        return f"demo model '{DEMO_MODEL}' version {version.version} registered and in production"
