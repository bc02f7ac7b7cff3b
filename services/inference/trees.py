"""An XGBoost model's trees walked by Keel's own C loop (``_trees.c``, ADR 0014), the way
Triton's FIL backend serves forests without the library that trained them.

XGBoost's predictor pays a fixed cost on every call (it measures every tree and lays
out their top levels again) and walks rows one branch at a time; served here, a one-row
call cost ~155 µs of CPU and a 100-row call ~260 µs, against ~34 and ~111 µs this way.

Only what this loop answers exactly as XGBoost does is compiled: a ``gbtree`` booster
(not DART, not linear) of single-output trees with numerical or categorical splits,
whose objective answers the margin itself, its sigmoid or its softmax. ``compile_forest``
says why it declines anything else, and ``verified`` keeps a compiled forest only if it
answers XGBoost's own ``inplace_predict`` to the bit on rows made from the model's
thresholds and categories (``verification_rows``); the model otherwise predicts through
XGBoost as before.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import xgboost

from services.inference._trees import Forest, logit

logger = logging.getLogger(__name__)

IDENTITY, SIGMOID, SOFTMAX = 0, 1, 2
# What XGBoost's "value" prediction does to the margin, per objective; the base score is
# stored as a probability for the logistic ones (the margin is its logit, ``_trees.logit``).
TRANSFORMS = {
    "reg:squarederror": IDENTITY,
    "reg:squaredlogerror": IDENTITY,
    "reg:pseudohubererror": IDENTITY,
    "reg:absoluteerror": IDENTITY,
    "binary:logitraw": IDENTITY,
    "binary:logistic": SIGMOID,
    "reg:logistic": SIGMOID,
    "multi:softprob": SOFTMAX,
}
LOGIT_BASE = frozenset({"binary:logistic", "reg:logistic"})
NODE = np.dtype([("cond", "<f4"), ("feature", "<i4"), ("left", "<i4"), ("missing_right", "<i4")])
VERIFY_ROWS = 512  # rows of thresholds and their neighbours a compiled forest must agree on


@dataclass(frozen=True)
class Compiled:
    """A forest and the shape of its answer, XGBoost's: ``[n]`` for one output (and for
    no rows), ``[n, outputs]`` otherwise."""

    forest: Forest
    width: int
    outputs: int
    transform: int  # IDENTITY, SIGMOID or SOFTMAX

    def __call__(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        check_matrix(x, self.width)
        out = np.empty((len(x), self.outputs), dtype=np.float32)
        self.forest.predict(x, len(x), out)
        return out if self.outputs > 1 and len(x) else out.reshape(len(x))

    @property
    def classifies(self) -> bool:
        """Whether it answers probabilities (a sigmoid or a softmax), so ``classify`` works."""
        return self.transform != IDENTITY

    def classify(
        self, x: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """A classifier's labels ``[n]`` and probabilities ``[n, classes]`` in one C call:
        the same numbers as stacking ``1 - p, p`` (one output) and numpy's argmax."""
        check_matrix(x, self.width)
        probabilities = np.empty((len(x), max(self.outputs, 2)), dtype=np.float32)
        labels = np.empty(len(x), dtype=np.int64)
        self.forest.classify(x, len(x), probabilities, labels)
        return labels, probabilities


def check_matrix(x: npt.NDArray[Any], width: int) -> None:
    """What both predictors read: a C-contiguous float32 matrix of ``width`` columns."""
    if x.dtype != np.float32 or x.ndim != 2 or not x.flags.c_contiguous:
        raise TypeError(f"expected a C-contiguous float32 matrix, got {x.dtype} {x.shape}")
    if x.shape[1] != width:
        raise ValueError(f"expected {width} features per row, got {x.shape[1]}")


def compile_forest(booster: xgboost.Booster, *, margin: bool = False) -> Compiled | str:
    """The booster's trees laid out for ``_trees.Forest``, or why they cannot be."""
    return _compile(json.loads(booster.save_raw("json")), booster.num_features(), margin)


def _compile(model: dict[str, Any], width: int, margin: bool) -> Compiled | str:
    learner = model["learner"]
    objective = str(learner["objective"]["name"])
    gradient = learner["gradient_booster"]
    if gradient["name"] != "gbtree":
        return f"the booster is {gradient['name']}, not gbtree"
    if objective not in TRANSFORMS and not (margin and objective == "multi:softmax"):
        return f"the objective {objective} is not one the trees answer"
    params = learner["learner_model_param"]
    if int(params.get("num_target", "1")) > 1:
        return "the trees have several targets"
    scores = [float(v) for v in str(params["base_score"]).strip("[]").split(",")]
    outputs = max(int(params.get("num_class", "0")), 1)
    trees = gradient["model"]["trees"]
    if not trees or len(scores) not in (1, outputs):
        return "no trees, or a base score per output the trees do not match"
    laid = _lay_out(trees, width)
    if isinstance(laid, str):
        return laid
    nodes, leaves, roots, depths, cat_spans, cat_bits = laid
    base = np.array(scores if len(scores) == outputs else scores * outputs, dtype=np.float32)
    if objective in LOGIT_BASE:
        base = np.array([logit(float(score)) for score in base], dtype=np.float32)
    groups = np.asarray(gradient["model"]["tree_info"], dtype=np.int32)
    transform = IDENTITY if margin else TRANSFORMS[objective]
    forest = Forest(
        nodes, leaves, roots, depths, groups, base, width, transform, cat_spans, cat_bits
    )
    return Compiled(forest, width, outputs, transform)


def _lay_out(trees: list[dict[str, Any]], width: int) -> tuple[npt.NDArray[Any], ...] | str:
    nodes, leaves, roots, depths, spans = [], [], [], [], []
    bits: list[npt.NDArray[np.uint32]] = []
    start = words = 0
    for number, tree in enumerate(trees):
        left = np.asarray(tree["left_children"], dtype=np.int64)
        right = np.asarray(tree["right_children"], dtype=np.int64)
        count = len(left)
        split = left != -1
        if int(tree["tree_param"].get("size_leaf_vector", "1")) > 1:
            return f"tree {number} has leaves of several values"
        if np.any(right[split] != left[split] + 1):
            return f"tree {number} has a right child that does not follow its left one"
        if np.any(left[split] <= np.flatnonzero(split)):
            return f"tree {number} has a child before its parent"
        features = np.asarray(tree["split_indices"], dtype=np.int64)
        if np.any(features[split] >= width) or np.any(features[split] < 0):
            return f"tree {number} reads a column the model does not have"
        categories = _categories(tree, split)
        if isinstance(categories, str):
            return f"tree {number} {categories}"
        conditions = np.asarray(tree["split_conditions"], dtype=np.float32)
        here = np.zeros(count, dtype=NODE)
        own = np.arange(count, dtype=np.int64) + start
        here["cond"] = np.where(split, conditions, -np.inf)
        here["feature"] = np.where(split, features, 0)
        here["left"] = np.where(split, left + start, own - 1)
        default_left = np.asarray(tree["default_left"], dtype=bool)
        here["missing_right"] = np.where(split, ~default_left, True)
        nodes.append(here)
        leaves.append(np.where(split, 0, conditions).astype(np.float32))
        span = np.full((count, 2), -1, dtype=np.int64)
        span[:, 1] = 0
        for node, node_bits in categories.items():
            span[node] = (words, len(node_bits))
            bits.append(node_bits)
            words += len(node_bits)
        spans.append(span)
        roots.append(start)
        depths.append(_depth(left, right))
        start += count
    if max(start, words) > np.iinfo(np.int32).max:
        return "the forest has more nodes or categories than the loop indexes"
    return (
        np.concatenate(nodes),
        np.concatenate(leaves),
        np.asarray(roots, dtype=np.int32),
        np.asarray(depths, dtype=np.int32),
        np.concatenate(spans).astype(np.int32),
        np.concatenate(bits) if bits else np.zeros(0, dtype=np.uint32),
    )


def _categories(
    tree: dict[str, Any], split: npt.NDArray[np.bool_]
) -> dict[int, npt.NDArray[np.uint32]] | str:
    """Each categorical split's categories as bits (category c: bit c % 32 of word c / 32),
    from the tree's flat lists; those of a row that go right."""
    kinds = np.asarray(tree["split_type"], dtype=np.int64)
    if np.any(kinds[~split] != 0) or np.any((kinds != 0) & (kinds != 1)):
        return "has a split type the walk does not know"
    listed = [int(node) for node in tree.get("categories_nodes", [])]
    if sorted(listed) != sorted(int(node) for node in np.flatnonzero(kinds == 1)):
        return "lists categories for other nodes than its categorical splits"
    flat = np.asarray(tree.get("categories", []), dtype=np.int64)
    found: dict[int, npt.NDArray[np.uint32]] = {}
    for node, begin, size in zip(
        listed, tree["categories_segments"], tree["categories_sizes"], strict=True
    ):
        chosen = flat[int(begin) : int(begin) + int(size)]
        if len(chosen) != int(size) or np.any(chosen < 0) or np.any(chosen >= 1 << 24):
            return "has categories outside 0 to 2^24"
        node_bits = np.zeros(int(chosen.max()) // 32 + 1 if len(chosen) else 0, dtype=np.uint32)
        np.bitwise_or.at(node_bits, chosen // 32, (1 << (chosen % 32)).astype(np.uint32))
        found[node] = node_bits
    return found


def _depth(left: npt.NDArray[np.int64], right: npt.NDArray[np.int64]) -> int:
    """Steps from the root to the deepest leaf (children come after their parent)."""
    depth = np.zeros(len(left), dtype=np.int64)
    for node in range(len(left)):
        if left[node] != -1:
            depth[left[node]] = depth[right[node]] = depth[node] + 1
    return int(depth.max())


def verification_rows(
    trees: list[dict[str, Any]], width: int, count: int = VERIFY_ROWS
) -> npt.NDArray[np.float32]:
    """Rows whose values sit where a walk that differs from XGBoost's would show: on the
    model's thresholds and the floats either side, on its categories, the integers either
    side and halfway, or missing, infinite, negative or past the largest category."""
    rng = np.random.default_rng(0)
    points: list[list[float]] = [[] for _ in range(width)]
    for tree in trees:
        kinds, features = tree["split_type"], tree["split_indices"]
        for node, (feature, cond, left) in enumerate(
            zip(features, tree["split_conditions"], tree["left_children"], strict=True)
        ):
            if left != -1 and kinds[node] == 0:
                below = np.nextafter(np.float32(cond), np.float32(-np.inf))
                above = np.nextafter(np.float32(cond), np.float32(np.inf))
                points[feature] += [cond, float(below), float(above)]
        flat = tree.get("categories", [])
        for node, begin, size in zip(
            tree.get("categories_nodes", []),
            tree.get("categories_segments", []),
            tree.get("categories_sizes", []),
            strict=True,
        ):
            for category in flat[int(begin) : int(begin) + int(size)]:
                points[features[node]] += [category, category - 1, category + 1, category + 0.5]
    special = [np.nan, np.inf, -np.inf, 0.0, -0.5, -1.0, float(1 << 24)]
    rows = np.zeros((count, width), dtype=np.float32)
    for column, values in enumerate(points):
        rows[:, column] = rng.choice(np.asarray(values + special, dtype=np.float32), size=count)
    return rows


def verified(booster: xgboost.Booster, *, margin: bool = False) -> Compiled | None:
    """A compiled forest that answers what XGBoost answers, or None (logged why)."""
    model = json.loads(booster.save_raw("json"))
    width = booster.num_features()
    compiled = _compile(model, width, margin)
    if isinstance(compiled, str):
        logger.info("predicting through XGBoost: %s", compiled)
        return None
    rows = verification_rows(model["learner"]["gradient_booster"]["model"]["trees"], width)
    kind = "margin" if margin else "value"
    expected = np.asarray(booster.inplace_predict(rows, predict_type=kind))
    got = compiled(rows)
    if got.shape != expected.shape or not np.array_equal(got, expected, equal_nan=True):
        logger.warning("predicting through XGBoost: the compiled trees differed from it")
        return None
    return compiled
