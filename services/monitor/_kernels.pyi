from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

def count_numeric(
    columns: Sequence[npt.NDArray[np.float64]],
    missing: Sequence[npt.NDArray[np.bool_] | None],
    params: npt.NDArray[np.float64],
    edge_count: int,
    grid_cells: int,
    ints: npt.NDArray[np.int64],
    floats: npt.NDArray[np.float64],
) -> None: ...
def plain_ids_json(data: bytes, n: int, max_size: int) -> str | None: ...
