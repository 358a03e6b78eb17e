"""The engine's contract with the Django side: torch-free contract types, image limits passed in."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ml.engine.contracts import Example, ImageLimits, ImageLoadError

ROOT = Path(__file__).resolve().parents[2]


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def test_building_examples_and_snapshots_does_not_import_torch():
    # Everything the Django side imports to build a snapshot, load its examples or validate a
    # config; torch only arrives when a model is trained or loaded.
    code = (
        "import os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'genreweb.settings_test'); "
        "import django; django.setup(); "
        "import ml.services.snapshots, ml.services.data, ml.services.evaluation, ml.services.inference, "
        "ml.services.training, ml.engine.contracts, ml.engine.registry, ml.engine.families; "
        "from ml.engine.registry import get_config; get_config('minilm+effnet-frozen-gated'); "
        "ml.services.data.Example(key='1', text='x'); "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"torch was imported: {result.stdout[:300]}"


def test_naming_embedding_spaces_does_not_import_torch():
    # The similar-movies panel and API name the store's spaces in a web process.
    code = (
        "import os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'genreweb.settings_test'); "
        "import django; django.setup(); "
        "import ml.services.similar; from ml.engine.identity import encoder_space; "
        "from ml.engine.registry import get_config; config = get_config('minilm+effnet-frozen-concat-late'); "
        "spaces = [encoder_space(config, which, 'cpu') for which in ('text', 'image')]; "
        "assert all(spaces) and spaces[0].startswith('minilm-'), spaces; "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"torch was imported: {result.stdout[:300]}"


def test_engine_data_still_exports_the_contract_types():
    from ml.engine import data

    assert data.Example is Example and data.ImageLoadError is ImageLoadError


def test_engine_decoder_refuses_more_pixels_than_its_limit():
    from ml.engine.data import decode_image

    data = _png(101, 100)
    with pytest.raises(ImageLoadError, match="too large"):
        decode_image(data, "m1", ImageLimits(max_pixels=100 * 100))
    assert decode_image(data, "m1", ImageLimits(max_pixels=101 * 100)).size == (101, 100)


def test_engine_reader_refuses_files_over_the_byte_cap(tmp_path):
    from ml.engine.data import image_bytes

    data = _png(20, 20)
    path = tmp_path / "p.png"
    path.write_bytes(data)
    small = ImageLimits(max_bytes=len(data) - 1)
    for image in (data, str(path)):
        with pytest.raises(ImageLoadError, match="over the"):
            image_bytes(Example("m2", "", image), small)
        assert image_bytes(Example("m2", "", image), ImageLimits(max_bytes=len(data))) == data


def test_fit_and_predict_decode_under_the_limits_passed_in(tmp_path):
    from ml.engine.artifact import load_model
    from ml.engine.train import fit

    train = [Example(f"t{i}", "word", _png(16 + i, 16), [i % 2]) for i in range(6)]
    val = [Example(f"v{i}", "word", _png(16, 16), [i % 2]) for i in range(4)]
    config = {"preset": "smallcnn-image", "epochs": 1, "batch_size": 4, "image_size": 32, "num_workers": 0}
    with pytest.raises(ImageLoadError, match="too large"):
        fit(config, ["A", "B"], train, val, device="cpu", image_limits=ImageLimits(max_pixels=16 * 16))
    model = fit(config, ["A", "B"], train, val, device="cpu", image_limits=ImageLimits(max_pixels=32 * 16))
    model.save(tmp_path / "a")
    big = [Example("big", "word", _png(40, 40))]
    assert load_model(tmp_path / "a", device="cpu").predict_proba(big).shape == (1, 2)
    with pytest.raises(ImageLoadError, match="too large"):
        load_model(tmp_path / "a", device="cpu", image_limits=ImageLimits(max_pixels=1000)).predict_proba(big)


def test_django_side_passes_its_settings_as_engine_limits(settings):
    from catalog import posters
    from ml.services.data import engine_image_limits

    settings.GENREWEB_POSTER_MAX_PIXELS = 12_345
    limits = engine_image_limits()
    assert limits == ImageLimits(max_pixels=12_345, max_bytes=posters.MAX_POSTER_BYTES)


@pytest.mark.django_db
def test_training_and_inference_services_hand_the_limits_to_the_engine(monkeypatch, settings):
    from ml.engine import artifact, train
    from ml.services import inference, training

    seen = {}

    def fake_fit(*args, image_limits=None, **kwargs):
        seen["fit"] = image_limits
        raise RuntimeError("stop here")

    def fake_load(*args, image_limits=None, **kwargs):
        seen["load"] = image_limits
        raise RuntimeError("stop here")

    settings.GENREWEB_POSTER_MAX_PIXELS = 777
    monkeypatch.setattr(train, "fit", fake_fit)
    monkeypatch.setattr(artifact, "load_model", fake_load)
    monkeypatch.setattr(training, "snapshot_examples", _two_examples)
    from ml.models import DatasetSnapshot, ModelVersion, TrainingRun

    snapshot = DatasetSnapshot.objects.create(name="s", genres=["A"], content_hash="0" * 64)
    with pytest.raises(training.TrainingFailed):
        training.train_model(snapshot.pk, {"preset": "tfidf-linear", "epochs": 1})
    assert seen["fit"].max_pixels == 777
    assert TrainingRun.objects.get().status == TrainingRun.Status.FAILED
    version = ModelVersion.objects.create(snapshot=snapshot, genres=["A"], thresholds=[0.5], checksum="c")
    monkeypatch.setattr(inference, "local_artifact_dir", lambda v: "/nowhere")
    inference.clear_predictor_cache()
    with pytest.raises(RuntimeError, match="stop here"):
        inference.get_predictor(version.pk)
    assert seen["load"].max_pixels == 777


def _two_examples(snapshot, splits, progress=None):
    from ml.services.data import SnapshotData

    example = Example("1", "word", None, [0])
    return SnapshotData(genres=["A"], examples={"train": [example], "val": [example], "test": []})
