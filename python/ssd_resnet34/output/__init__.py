"""Results out: COCO results JSON, images with the boxes drawn, and the output folder of a run.

- ``run_writer.py``: the one writer of a detection run's folder (images, videos, the Ray path) and
  its output formats;
- ``coco_results.py``: detections as COCO results records (``image_id``, ``category_id``, xywh);
- ``draw.py``: labelled boxes drawn on a copy of the image;
- ``parquet.py``: the one Parquet table schema;
- ``jsonl.py``, ``video_writer.py``: a video run's ``detections.jsonl`` and annotated videos;
- ``run_folder.py``: a run's files written as one consistent set (or not at all).
"""
