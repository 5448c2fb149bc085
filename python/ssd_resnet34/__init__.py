"""MLPerf SSD-ResNet34 (COCO, 1200x1200) object detection with a native (Rust) postprocessor.

The model and its postprocess follow MLCommons' reference,
``vision/classification_and_detection/python/models/ssd_r34.py`` in mlcommons/inference;
the API follows FuriosaAI's model card for SSDResNet34.
"""
