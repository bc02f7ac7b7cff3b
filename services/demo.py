"""The demo ``make run`` (``keel up --demo``) plays once the suite is up: the whole
lifecycle on a seeded, synthetic credit-risk set, through the Python client.

1. Train a scikit-learn pipeline (one-hot categories → histogram gradient boosting) on
   8,000 applications: age, income, debt ratio, credit history, open accounts,
   employment, and ``sex`` — a protected attribute (scikit-learn's bundled classification
   sets have none), which the model never sees as a signal: defaults depend on the
   finances only.
2. Register it as ``credit-risk`` with objectives (ROC AUC, demographic parity ratio) and
   ``sex`` protected; promote it to ``staging``, then ``production``, through the gates.
3. Send traffic in the background through the inference service: a first half like the
   training data, then applicants with higher debt and lower incomes (drift); the true
   outcomes follow each half a few seconds later as feedback (delayed labels).

Then it prints where to look. Everything here is also in the README, step by step.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)
DEMO_MODEL = "credit-risk"
TRAINING_ROWS = 8000
REQUESTS_PER_HALF = 20
ROWS_PER_REQUEST = 50
PAUSE_S = 0.5
LABEL_DELAY_S = 3.0


def applications(rows: int, seed: int, *, drift: float = 0.0) -> tuple[Any, Any]:
    """A seeded frame of credit applications and whether each defaulted (0/1).
    ``drift`` in [0, 1] moves applicants towards more debt and less income."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    age = rng.integers(21, 70, rows).astype(np.float64)
    income = rng.lognormal(10.7 - 0.35 * drift, 0.45, rows).round(-2)
    debt_ratio = np.clip(rng.beta(2.0, 5.0, rows) + 0.25 * drift, 0.0, 1.5).round(3)
    history = np.clip(age - 18 - rng.exponential(6.0, rows), 0.0, None).round(1)
    accounts = rng.poisson(4.0, rows).astype(np.float64)
    employment = rng.choice(
        ["salaried", "self-employed", "unemployed", "retired"], rows, p=[0.62, 0.2, 0.08, 0.1]
    )
    sex = rng.choice(["female", "male"], rows)
    margin = (
        -1.6
        + 4.0 * debt_ratio
        - 0.8 * np.log(income / 45_000)
        - 0.04 * history
        + 0.12 * (accounts - 4)
        + 1.1 * (employment == "unemployed")
        + 0.3 * (employment == "self-employed")
    )
    defaulted = (rng.random(rows) < 1 / (1 + np.exp(-margin))).astype(np.int64)
    frame = pd.DataFrame(
        {
            "age": age,
            "income": income,
            "debt_ratio": debt_ratio,
            "credit_history_years": history,
            "open_accounts": accounts,
            "employment": employment,
            "sex": sex,
        }
    )
    return frame, defaulted


def train(frame: Any, defaulted: Any) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    prepare = ColumnTransformer(
        [("categories", OneHotEncoder(handle_unknown="ignore"), ["employment", "sex"])],
        remainder="passthrough",
    )
    model = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.08, random_state=7)
    return Pipeline([("prepare", prepare), ("model", model)]).fit(frame, defaulted)


def register(keel: Any) -> str:
    """Register and promote the demo model unless ``production`` already holds one."""
    from sklearn.model_selection import train_test_split

    from keel.client import NotFound

    try:
        held = keel.registry.get_alias(DEMO_MODEL, "production")
        return f"demo model '{DEMO_MODEL}' already in production (version {held.version})"
    except NotFound:
        pass
    frame, defaulted = applications(TRAINING_ROWS, seed=7)
    x_train, x_test, y_train, y_test = train_test_split(
        frame, defaulted, test_size=0.25, random_state=7, stratify=defaulted
    )
    version = keel.log_model(
        train(x_train, y_train),
        DEMO_MODEL,
        x_train,
        y_train,
        x_test,
        y_test,
        objectives=["roc_auc >= 0.70", "demographic_parity_ratio >= 0.80"],
        protected=["sex"],
        description="Demo: probability that a credit applicant defaults (synthetic, seeded)",
        cv=None,
    )
    keel.promote(DEMO_MODEL, version.version, "staging")
    keel.promote(DEMO_MODEL, version.version, "production")
    return (
        f"demo model '{DEMO_MODEL}' version {version.version} registered, "
        "promoted to staging and production through the gates"
    )


def send_traffic(keel: Any, stop: threading.Event, say: Callable[[str], None]) -> int:
    """Two halves of traffic (the second drifted), each followed by its delayed labels;
    the number of predictions made."""
    made = 0
    for half, drift in enumerate((0.0, 1.0)):
        ids: list[str] = []
        outcomes: list[Any] = []
        for request in range(REQUESTS_PER_HALF):
            if stop.wait(PAUSE_S):
                return made
            frame, defaulted = applications(
                ROWS_PER_REQUEST, seed=1000 * half + request, drift=drift
            )
            prediction = keel.predict(DEMO_MODEL, frame)
            ids += prediction.ids
            outcomes += defaulted.tolist()
            made += len(prediction.ids)
        say(
            f"demo: {'drifted' if drift else 'normal'} traffic sent "
            f"({REQUESTS_PER_HALF * ROWS_PER_REQUEST} predictions); labels follow in "
            f"{LABEL_DELAY_S:g} s"
        )
        if stop.wait(LABEL_DELAY_S):
            return made
        keel.feedback(ids, outcomes, model=DEMO_MODEL)
    return made


def where_to_look() -> str:
    name = DEMO_MODEL
    return "\n".join(
        [
            "demo: where to look —",
            f"  keel models list · keel versions list {name} · keel alias history {name}",
            f"  keel drift {name} · keel perf {name} · keel fairness {name}",
            f"  keel report {name}   (writes keel-report-{name}.html here)",
        ]
    )


class Demo:
    """Registers the model, then plays the traffic in a daemon thread (``keel up``
    stays responsive to Ctrl-C; ``stop`` ends the traffic early)."""

    def __init__(self, registry: str, inference: str, monitor: str) -> None:
        self.registry, self.inference, self.monitor = registry, inference, monitor
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, say: Callable[[str], None]) -> None:
        from keel.client import Keel

        keel = Keel(
            registry=self.registry, inference=self.inference, monitor=self.monitor, user="keel-demo"
        )
        say(register(keel))

        def play() -> None:
            try:
                keel.wait_ready(DEMO_MODEL, timeout_s=60)  # inference follows the promotion
                made = send_traffic(keel, self.stop, say)
                if not self.stop.is_set():  # the last line says it is all done
                    say(where_to_look())
                    say(f"demo: done — {made} predictions made and labelled")
            except Exception as error:  # noqa: BLE001 - the suite keeps running without it
                say(f"demo: traffic stopped: {error}")
            finally:
                keel.close()

        self.thread = threading.Thread(target=play, name="demo-traffic", daemon=True)
        self.thread.start()
