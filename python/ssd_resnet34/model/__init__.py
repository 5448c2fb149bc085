"""The ONNX model files: where the weights come from and how the graph is prepared.

- ``weights.py``: find, verify and download the official ``resnet34-ssd1200.onnx``;
- ``truncate.py``: cut a full graph at its 12 head convolutions (the postprocess is ours);
- ``synthetic.py``: the exact topology with random weights, for machines without the file;
- ``graph.py``: ONNX helpers (loading with clear errors, shape inference, counts).
"""
