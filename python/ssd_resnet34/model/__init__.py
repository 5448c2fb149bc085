"""The ONNX model files: where the weights come from and how the graph is prepared.

- ``weights.py``: find, verify and download the official ``resnet34-ssd1200.onnx``;
- ``truncate.py``: cut a full graph at its 12 head convolutions (the postprocess is ours);
- ``optimize.py``: constant weights, BatchNorm folding and a symbolic batch for the heads graph;
- ``synthetic.py``: the exact topology with random weights, for machines without the file;
- ``graph.py``: ONNX helpers (loading with clear errors, shape inference, counts);
- ``fp16.py``: the float16 copy onnxruntime's CUDA provider runs;
- ``quantize.py``: int8 post-training quantization and its cache (``calibration.py``: the photos;
  ``int8_tools.py``: NNCF for OpenVINO, onnxruntime's QDQ quantizer).
"""
