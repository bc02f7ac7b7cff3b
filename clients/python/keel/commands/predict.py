"""``keel predict``: predictions for the rows of a CSV or JSON file, as a table.

Input: CSV with a header row, or JSON — a list of row objects (``[{"age": 41}, …]``), an
object of columns (``{"age": [41, 37]}``), or a list of lists (columns in signature
order); ``{"instances": …}`` around any of them is accepted too. Columns are matched to
the model's features by name. Large files are sent in batches (``--batch-size``), with a
progress bar on a terminal. Needs numpy and pandas (``pip install 'keel-client[ml]'
pandas``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress

from keel.client._optional import require
from keel.commands._common import (
    DEFAULT_INFERENCE,
    DEFAULT_MONITOR,
    DEFAULT_REGISTRY,
    InferenceOption,
    JsonOption,
    MonitorOption,
    RegistryOption,
    Target,
    UserOption,
    emit,
    session,
    stderr_console,
    usage_error,
)
from keel.commands._registry import parse_pairs
from keel.commands._render import number_text, table


def read_rows(path: Path) -> Any:
    """The rows of ``path`` (``.csv`` or ``.json``) as a pandas DataFrame."""
    pd = require("pandas")
    if not path.is_file():
        raise ValueError(f"input {str(path)!r}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix == ".json":
            data = json.loads(path.read_text())
            if isinstance(data, dict) and "instances" in data:
                data = data["instances"]
            return pd.DataFrame(data) if data else pd.DataFrame()
    except (ValueError, json.JSONDecodeError, pd.errors.ParserError) as error:
        raise ValueError(f"input {str(path)!r}: {error}") from None
    raise ValueError(f"input {str(path)!r}: expected a .csv or .json file")


def prediction_rows(prediction: Any) -> list[dict[str, Any]]:
    """One plain dict per row: ``id``, ``version``, then ``label`` and ``probabilities``,
    or ``prediction``."""
    rows = []
    classes = list(prediction.class_labels) or (
        [str(i) for i in range(prediction.probabilities.shape[1])]
        if prediction.probabilities is not None
        else []
    )
    for i, row_id in enumerate(prediction.ids):
        row: dict[str, Any] = {"id": row_id, "version": prediction.version}
        if prediction.label is not None:
            label = prediction.label[i]
            row["label"] = label.item() if hasattr(label, "item") else label
        if prediction.probabilities is not None:
            values = prediction.probabilities[i].tolist()
            row["probabilities"] = dict(zip(classes, values, strict=True))
        if prediction.prediction is not None:
            row["prediction"] = float(prediction.prediction[i])
        rows.append(row)
    return rows


def predict(
    name: Annotated[str, typer.Argument(help="Model or deployment name.")],
    input_file: Annotated[
        Path, typer.Option("--input", "-i", help="Rows to predict: a .csv or .json file.")
    ],
    version: Annotated[
        str, typer.Option("--version", help="Version number or alias; default: the routing.")
    ] = "",
    parameter: Annotated[
        list[str] | None,
        typer.Option("--param", help="Request parameter KEY=VALUE (e.g. a sticky key)."),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 1000,
    registry: RegistryOption = DEFAULT_REGISTRY,
    inference: InferenceOption = DEFAULT_INFERENCE,
    monitor: MonitorOption = DEFAULT_MONITOR,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Predict the rows of a CSV or JSON file with model (or deployment) NAME."""
    try:
        frame = read_rows(input_file)
        parameters = parse_pairs(parameter, "--param") if parameter else None
    except (ImportError, ValueError) as error:
        usage_error(str(error))
    if len(frame) == 0:
        usage_error(f"input {str(input_file)!r}: no rows")
    rows: list[dict[str, Any]] = []
    model = name
    with session(Target(registry, inference, monitor, user)) as keel:
        starts = range(0, len(frame), batch_size)
        console = stderr_console()
        show = console.is_terminal and len(starts) > 1
        with Progress(console=console, transient=True, disable=not show) as progress:
            task = progress.add_task(f"Predicting {len(frame)} rows", total=len(frame))
            for start in starts:
                part = frame.iloc[start : start + batch_size]
                found = keel.predict(name, part, version=version, parameters=parameters)
                rows.extend(prediction_rows(found))
                model = found.model
                progress.advance(task, len(part))
    document = {"model": model, "predictions": rows}

    def render(console: Console) -> None:
        classes = list(rows[0].get("probabilities", {}))
        columns = ["ROW", "ID", "VERSION"]
        columns += ["LABEL", *(f"P({c})" for c in classes)] if "label" in rows[0] else []
        columns += ["PREDICTION"] if "prediction" in rows[0] else []
        cells = []
        for i, row in enumerate(rows):
            cell: list[Any] = [i, row["id"], row["version"]]
            if "label" in row:
                cell += [row["label"], *(number_text(row["probabilities"][c]) for c in classes)]
            if "prediction" in row:
                cell.append(number_text(row["prediction"]))
            cells.append(cell)
        console.print(table(model, columns, cells))

    emit(as_json, document, render)
