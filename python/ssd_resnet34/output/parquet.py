"""The one Parquet table of a run's per-image results (``detections.parquet``, and the rows the
Ray actors return, :func:`ssd_resnet34.distributed.build_dataset`).

One row per image, columns (:func:`schema`):

- ``path`` (string): the file as the user (or Ray Data) named it;
- ``image_id`` (int64, null): its COCO image id (null for an image that could not be processed,
  and, in the actors' rows, for a name that is not a COCO name: the driver numbers those, as
  ``detect`` does);
- ``width``, ``height`` (int64, null when unreadable): the original image size in pixels;
- ``error`` (string, null when processed): why the image could not be processed;
- ``detections`` (list of struct ``image_id`` int64, ``category_id`` int64, ``bbox``
  list<double> ``[x, y, w, h]`` in pixels, ``score`` double): its COCO results records, score
  descending, values exactly as :func:`ssd_resnet34.output.coco_results.to_coco_results`
  (the records of ``detections.json``, key for key).

Needs ``pyarrow`` (the ``ssd-resnet34[ray]`` extra).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterable, List, Optional, Sequence

__all__ = ["COLUMNS", "rows_table", "schema", "write_table"]

#: The columns, in order.
COLUMNS = ("path", "image_id", "width", "height", "error", "detections")


def schema() -> Any:
    """The ``pyarrow.Schema`` of the table (see the module docstring)."""
    import pyarrow as pa

    record = pa.struct([("image_id", pa.int64()), ("category_id", pa.int64()), ("bbox", pa.list_(pa.float64())),
                        ("score", pa.float64())])
    return pa.schema([("path", pa.string()), ("image_id", pa.int64()), ("width", pa.int64()),
                      ("height", pa.int64()), ("error", pa.string()), ("detections", pa.list_(record))])


def rows_table(rows: Iterable[Dict[str, Any]]) -> Any:
    """A ``pyarrow.Table`` of :func:`schema` from row dicts with the keys of :data:`COLUMNS`
    (``detections``: records with or without ``image_id``; a missing one is the row's). Raises
    ``KeyError`` for a missing column and what pyarrow raises for a value of the wrong type."""
    import pyarrow as pa

    columns: Dict[str, List[Any]] = {name: [] for name in COLUMNS}
    for row in rows:
        image_id: Optional[int] = row["image_id"]
        for name in COLUMNS[:-1]:
            columns[name].append(row[name])
        columns["detections"].append([{"image_id": image_id, **record} for record in row["detections"] or []])
    return pa.Table.from_pydict(columns, schema=schema())


def write_table(path: "str | os.PathLike[str]", rows: Sequence[Dict[str, Any]]) -> None:
    """Write the rows (as :func:`rows_table` takes them) as a Parquet file at ``path``."""
    import pyarrow.parquet as pq

    pq.write_table(rows_table(rows), os.fspath(path))
