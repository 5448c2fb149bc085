"""Results out: COCO results JSON, images with the boxes drawn, and the output folder of a run.

- ``coco_results.py``: detections as COCO results records (``image_id``, ``category_id``, xywh);
- ``draw.py``: labelled boxes drawn on a copy of the image;
- ``run_folder.py``: a run's files written as one consistent set (or not at all).
"""
