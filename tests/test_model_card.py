"""FuriosaAI's model card for SSDResNet34 runs as written.

The two usage snippets of the card (furiosa-models ``docs/examples/ssd_resnet34.py`` and
``ssd_resnet34_native.py``, as of the release whose card used ``session.create(model)`` and
``sess.run(image).numpy()``) are kept below word for word. The test changes only what must name
this package instead of FuriosaAI's (the two import lines) and the model source
(``SSDResNet34.load()`` -> ``SSDResNet34.synthetic()``: random weights, the exact topology), each
replacement checked to happen exactly once, and runs the result in a folder holding
``tests/assets/cat.jpg``. The card's last line (the postprocess call) is kept as an expression;
the test captures its value.
"""
from __future__ import annotations

import ast
import warnings

import numpy as np
import pytest
from _paths import SHARED_DATA
from ssd_resnet34.layout import HEAD_SHAPES
from ssd_resnet34.types import ObjectDetectionResult

CAT = SHARED_DATA / "images" / "cat.jpg"

PYTHON_CARD = """\
from furiosa.models.vision import SSDResNet34
from furiosa.runtime import session

resnet34 = SSDResNet34.load()

with session.create(resnet34) as sess:
    image, contexts = resnet34.preprocess(["tests/assets/cat.jpg"])
    output = sess.run(image).numpy()
    resnet34.postprocess(output, contexts=contexts)
"""

NATIVE_CARD = """\
from furiosa.models.vision import SSDResNet34
from furiosa.runtime import session

resnet34 = SSDResNet34.load(use_native=True)

with session.create(resnet34) as sess:
    image, contexts = resnet34.preprocess(["tests/assets/cat.jpg"])
    output = sess.run(image).numpy()
    resnet34.postprocessor(output, contexts=contexts[0])
"""

#: What names this package instead of FuriosaAI's, and the model source.
REPLACEMENTS = [
    ("from furiosa.models.vision import SSDResNet34", "from ssd_resnet34 import SSDResNet34"),
    ("from furiosa.runtime import session", "from ssd_resnet34 import session"),
    ("SSDResNet34.load(", "SSDResNet34.synthetic("),
]


def _run_card(card: str, folder) -> dict:
    """Run ``card`` with :data:`REPLACEMENTS` in ``folder``; its names, and ``result``: the value of
    its last line."""
    for old, new in REPLACEMENTS:
        assert card.count(old) == 1, old
        card = card.replace(old, new)
    tree = ast.parse(card)
    block = tree.body[-1]
    assert isinstance(block, ast.With) and isinstance(block.body[-1], ast.Expr)
    last = block.body[-1]
    block.body[-1] = ast.copy_location(
        ast.Assign(targets=[ast.Name("result", ast.Store())], value=last.value), last)
    ast.fix_missing_locations(tree)
    namespace: dict = {}
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # synthetic(): "the weights are random"
        patch.chdir(folder)
        exec(compile(tree, "<model card>", "exec"), namespace)
    return namespace


@pytest.fixture
def card_folder(tmp_path):
    if not CAT.is_file():
        pytest.skip(f"the shared cat photo is missing: {CAT}")
    (tmp_path / "tests" / "assets").mkdir(parents=True)
    (tmp_path / "tests" / "assets" / "cat.jpg").symlink_to(CAT)
    return tmp_path


@pytest.mark.parametrize("card", [PYTHON_CARD, NATIVE_CARD], ids=["python-postprocessor", "native-postprocessor"])
def test_the_model_card_runs_as_written(card, card_folder, native):
    names = _run_card(card, card_folder)
    output = names["output"]
    assert isinstance(output, list) and len(output) == len(HEAD_SHAPES)
    assert all(isinstance(a, np.ndarray) and a.shape == (1, *shape) and a.dtype == np.float32
               for a, shape in zip(output, HEAD_SHAPES))
    assert names["sess"].closed  # the with block closed it
    result = names["result"]
    # one image: its detections (random weights, so whatever they are), as the card's objects
    detections = result[0] if result and isinstance(result[0], list) else result
    assert isinstance(result, list) and all(isinstance(d, ObjectDetectionResult) for d in detections)
    if card is PYTHON_CARD:
        assert len(result) == 1  # a list per image of the batch
