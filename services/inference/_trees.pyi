from typing import Any

import numpy as np
import numpy.typing as npt

class Forest:
    def __init__(
        self,
        nodes: npt.NDArray[Any],
        leaves: npt.NDArray[np.float32],
        roots: npt.NDArray[np.int32],
        depths: npt.NDArray[np.int32],
        groups: npt.NDArray[np.int32],
        base: npt.NDArray[np.float32],
        width: int,
        transform: int,
        cat_spans: npt.NDArray[np.int32],
        cat_bits: npt.NDArray[np.uint32],
    ) -> None: ...
    def predict(self, x: npt.NDArray[np.float32], n: int, out: npt.NDArray[np.float32]) -> None: ...
    def classify(
        self,
        x: npt.NDArray[np.float32],
        n: int,
        probabilities: npt.NDArray[np.float32],
        labels: npt.NDArray[np.int64],
    ) -> None: ...

def logit(p: float) -> float: ...
