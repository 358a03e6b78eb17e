"""Missing inputs, calibration and text fields of the engine, on tiny synthetic data.

The fused models here use the TF-IDF featuriser for text and a fixed mean-colour image
encoder (tests.ml.test_families), so they train in about a second without MiniLM or
EfficientNet.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ml.engine import families
from ml.engine.artifact import load_model
from ml.engine.calibration import apply_calibration, fit_calibration
from ml.engine.contracts import Example
from ml.engine.data import labels_matrix
from ml.engine.fusions import Late
from ml.engine.inputs import compose_text, input_sets, with_composed_text, without
from ml.engine.metrics import calibration_bins, evaluate
from ml.engine.registry import get_config
from ml.engine.train import fit
from tests.factories import image_bytes
from tests.ml.test_families import MEANCOLOUR

GENRES = ["Action", "Romance", "Horror"]
WORDS = [["gun", "chase", "explosion"], ["love", "kiss", "wedding"], ["ghost", "blood", "scream"]]
COLOURS = [(230, 30, 30), (30, 230, 30), (30, 30, 230)]


@pytest.fixture
def meancolour():
    families.register_encoder(MEANCOLOUR)
    yield
    families.unregister_encoder("meancolour")


def examples(n: int, seed: int) -> list[Example]:
    """Both the words and the poster colour name the genre, so either input alone suffices."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        g = int(rng.integers(3))
        words = " ".join(rng.choice(WORDS[g], 4)) + " " + " ".join(rng.choice(sum(WORDS, []), 1))
        poster = image_bytes(24, 36, colour=COLOURS[g], noise=20, seed=seed * 1000 + i)
        out.append(Example(key=f"s{seed}-{i}", text=words, image=poster, labels=[g], title=f"Film {i}", year=1990))
    return out


@pytest.fixture(scope="module")
def data():
    return examples(90, seed=1), examples(45, seed=2)


def fused_config(**changes):
    return get_config(
        {
            "preset": "minilm+effnet-frozen-concat",
            "text_encoder": "tfidf",
            "image_encoder": "meancolour",
            "name": "tfidf+meancolour",
            "image_size": 32,
            "epochs": 25,
            "batch_size": 16,
            "lr": 1e-2,
            "weight_decay": 1e-4,
            "hidden_dim": 32,
            "dropout": 0.1,
            "input_dropout": 0.0,
            "patience": 100,
            "num_workers": 0,
            "tfidf_min_df": 1,
            **changes,
        }
    )


def micro_f1(model, val, drop=None) -> float:
    shown = without(val, drop) if drop else val
    probs, decisions = model.predict(shown)
    return evaluate(labels_matrix(val, len(GENRES)), probs, decisions, GENRES)["micro_f1"]


# ---------------------------------------------------------------- missing inputs


@pytest.mark.slow
def test_modality_dropout_makes_a_fused_head_usable_with_either_input_missing(meancolour, data):
    train, val = data
    plain = fit(fused_config(), GENRES, train, val, device="cpu")
    robust = fit(fused_config(modality_dropout=0.5), GENRES, train, val, device="cpu")
    for model in (plain, robust):
        assert micro_f1(model, val) >= 0.9
    worst_plain = min(micro_f1(plain, val, "image"), micro_f1(plain, val, "text"))
    worst_robust = min(micro_f1(robust, val, "image"), micro_f1(robust, val, "text"))
    # Trained with modality dropout, each input alone still names the genre.
    assert worst_robust >= 0.9, (worst_plain, worst_robust)
    assert worst_robust >= worst_plain
    # It keeps calibration and thresholds for the cases where one input is missing.
    assert set(robust.thresholds_by_inputs) == {"text", "image"}
    assert set(robust.calibration) == {"all", "text", "image"}
    assert robust.input_sets(without(val[:2], "image")) == ["text", "text"]
    assert robust.input_sets(without(val[:1], "text")) == ["image"]


def test_modality_dropout_never_removes_the_last_input():
    from ml.engine.model import GenreModel

    config = get_config({"preset": "minilm+effnet-frozen-concat", "modality_dropout": 0.9, "input_dropout": 0.0})
    model = GenreModel(config, 3, text_dim=4, image_dim=4)
    seen = {}

    def spy(text, image, present=None):
        seen["present"] = present
        return torch.zeros(len(text), 3), []

    model.head.forward = spy
    model._head_takes_present = True
    model.train()
    torch.manual_seed(0)
    n = 400
    has_image = torch.arange(n) % 2 == 0  # every other movie has no poster at all
    model(
        {
            "index": torch.arange(n),
            "text_feat": torch.ones(n, 4),
            "image_feat": torch.ones(n, 4),
            "has_image": has_image,
        }
    )
    has_text_seen, has_image_seen = seen["present"]
    assert (has_text_seen | has_image_seen).all(), "a movie lost its last input"
    assert not has_text_seen.all() and not has_image_seen[has_image].all(), "nothing was dropped"
    assert not has_image_seen[~has_image].any()
    model.eval()
    model(
        {
            "index": torch.arange(n),
            "text_feat": torch.ones(n, 4),
            "image_feat": torch.ones(n, 4),
            "has_image": has_image,
        }
    )
    assert seen["present"][0].all(), "no dropout at prediction time"


def test_late_fusion_uses_only_the_present_input():
    torch.manual_seed(0)
    head = Late(text_dim=3, image_dim=2, n_genres=4, hidden=0, dropout=0.0, input_dropout=0.0).eval()
    text, image = torch.randn(5, 3), torch.zeros(5, 2)
    has_text = torch.tensor([True, True, True, False, True])
    has_image = torch.tensor([True, False, False, True, True])
    logits, _ = head(text, image, present=(has_text, has_image))
    p = torch.sigmoid(logits)
    p_text, p_image = torch.sigmoid(head.text_head(text)), torch.sigmoid(head.image_head(image))
    torch.testing.assert_close(p[1:3], p_text[1:3], atol=1e-5, rtol=0)  # no poster: the text head alone
    torch.testing.assert_close(p[3], p_image[3], atol=1e-5, rtol=0)  # no text: the poster head alone
    w = torch.sigmoid(head.mix)
    torch.testing.assert_close(p[0], w * p_text[0] + (1 - w) * p_image[0], atol=1e-5, rtol=0)


def test_an_ensemble_answers_a_movie_missing_an_input_with_its_one_input_members():
    from ml.engine.families import fusion

    torch.manual_seed(0)
    config = get_config(
        {"preset": "minilm+effnet-frozen-concat-late", "hidden_dim": 8, "dropout": 0.0, "input_dropout": 0.0}
    )
    head = fusion("ensemble").build(3, 2, 4, config, ("concat", "late")).eval()
    text, image = torch.randn(3, 3), torch.randn(3, 2)
    image[1] = 0
    present = (torch.tensor([True, True, False]), torch.tensor([True, False, True]))
    logits, _ = head(text, image, present=present)
    concat, late = head.members
    p_concat = torch.sigmoid(concat(text, image, present)[0])
    p_late = torch.sigmoid(late(text, image, present)[0])
    p = torch.sigmoid(logits)
    torch.testing.assert_close(p[0], (p_concat[0] + p_late[0]) / 2, atol=1e-5, rtol=0)  # both inputs: all vote
    torch.testing.assert_close(p[1:], p_late[1:], atol=1e-5, rtol=0)  # one input: the late member alone


def test_input_sets_and_removing_an_input():
    ex = Example("a", "An overview.", b"img", [0], title="Spectre", year=2015)
    assert without([ex], "image")[0].image is None and without([ex], "image")[0].text == "An overview."
    gone = without([ex], "text")[0]
    assert (gone.text, gone.title, gone.year, gone.image) == ("", "", None, b"img")
    assert input_sets([True, True, False], [True, False, True], fused=True) == ["all", "text", "image"]
    assert input_sets([True, False], [False, True], fused=False) == ["all", "all"]
    with pytest.raises(ValueError):
        without([ex], "title")


def test_text_fields_compose_title_year_and_overview():
    ex = Example("a", "A cryptic message.", None, [], title="Spectre", year=2015)
    assert compose_text(ex) == "A cryptic message."
    assert compose_text(ex, ("title", "year", "overview")) == "Spectre (2015). A cryptic message."
    assert compose_text(ex, ("title", "overview")) == "Spectre. A cryptic message."
    assert compose_text(Example("b", "", None, [], title="Up"), ("title", "year", "overview")) == "Up"
    assert compose_text(Example("c", "", None, []), ("title", "overview")) == ""
    assert with_composed_text([ex], ("overview",))[0] is ex
    assert get_config({"preset": "tfidf-linear", "text_fields": ["title", "overview"]}).text_fields == (
        "title",
        "overview",
    )
    with pytest.raises(ValueError, match="text_fields"):
        get_config({"preset": "tfidf-linear", "text_fields": ["plot"]})


# ---------------------------------------------------------------- calibration


def miscalibrated(n: int, seed: int):
    """True log-odds z; the model reports 3 z + 1.5 (overconfident and shifted up)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-1.0, 1.5, size=(n, 3))
    y = (rng.random((n, 3)) < 1 / (1 + np.exp(-z))).astype(np.float32)
    return 3 * z + 1.5, y


@pytest.mark.parametrize("method", ["platt", "temperature"])
def test_calibration_lowers_ece_on_held_out_data(method):
    fit_logits, fit_y = miscalibrated(3000, seed=0)
    test_logits, test_y = miscalibrated(3000, seed=1)
    raw = calibration_bins(test_y, apply_calibration(test_logits, None))["ece"]
    cal = fit_calibration(fit_logits, fit_y, method)
    after = calibration_bins(test_y, apply_calibration(test_logits, cal))["ece"]
    assert raw > 0.08, raw
    if method == "platt":
        assert after < min(0.03, raw / 2), (raw, after)
        np.testing.assert_allclose(cal["scale"], 1 / 3, atol=0.05)
        np.testing.assert_allclose(cal["bias"], -0.5, atol=0.15)
    else:  # one scale cannot undo the shift, but it removes the overconfidence
        assert after < 0.75 * raw, (raw, after)
        assert cal["bias"] == [0.0, 0.0, 0.0]
    # monotone per genre: the ranking (ROC AUC) is unchanged
    for j in range(3):
        assert np.array_equal(np.argsort(test_logits[:, j]), np.argsort(apply_calibration(test_logits, cal)[:, j]))


def test_calibration_none_is_the_plain_sigmoid_and_bad_input_is_refused():
    from ml.engine.trained import sigmoid

    logits, y = miscalibrated(50, seed=2)
    cal = fit_calibration(logits, y, "none")
    assert cal["method"] == "none"
    assert np.array_equal(apply_calibration(logits, cal), sigmoid(logits))
    with pytest.raises(ValueError):
        fit_calibration(logits, y, "isotonic-ish")
    with pytest.raises(ValueError):
        fit_calibration(logits, y[:10], "platt")
    # too few movies, or a genre with too few positives, keeps its raw scores
    assert fit_calibration(logits[:20], y[:20], "platt")["method"] == "none"
    few = y.copy()
    few[:, 1] = 0
    few[0, 1] = 1
    cal = fit_calibration(logits, few, "platt")
    assert (cal["scale"][1], cal["bias"][1]) == (1.0, 0.0) and cal["scale"][0] != 1.0


def test_a_calibrated_model_applies_its_calibration_and_survives_save_and_load(meancolour, data, tmp_path):
    train, val = data
    model = fit(fused_config(calibration="platt", epochs=6, pos_weight=True), GENRES, train, val, device="cpu")
    assert model.calibration["all"]["method"] == "platt"
    logits = model.logits(val)
    probs = model.predict_proba(val)
    raw = 1 / (1 + np.exp(-logits.astype(np.float64)))
    assert not np.allclose(probs, raw, atol=1e-4), "calibration was not applied"
    np.testing.assert_allclose(probs, apply_calibration(logits, model.calibration["all"]), atol=1e-6)
    model.save(tmp_path / "artifact")
    document = json.loads((tmp_path / "artifact" / "config.json").read_text())
    assert document["calibration"]["all"]["method"] == "platt"
    assert set(document["thresholds_by_inputs"]) == {"text", "image"}
    loaded = load_model(tmp_path / "artifact", device="cpu")
    assert loaded.calibration == model.calibration
    probs2, decisions2 = loaded.predict(val)
    assert np.array_equal(probs, probs2)
    np.testing.assert_array_equal(model.predict(val)[1], decisions2)
    for name in ("text", "image"):
        np.testing.assert_array_equal(loaded.thresholds_for(name), model.thresholds_for(name))
    # without a poster the loaded model uses its no-poster calibration and thresholds
    no_poster = without(val, "image")
    p_loaded, d_loaded = loaded.predict(no_poster)
    np.testing.assert_allclose(
        p_loaded, apply_calibration(loaded.logits(no_poster), loaded.calibration["text"]), atol=1e-6
    )
    assert loaded.last_input_sets == ["text"] * len(val)


def test_the_platform_evaluation_decides_each_movie_with_its_input_sets_thresholds(meancolour, data):
    from ml.engine.thresholds import apply_thresholds
    from ml.services.evaluation import score_examples

    train, val = data
    model = fit(fused_config(epochs=6), GENRES, train, val, device="cpu")
    model.thresholds_by_inputs["text"] = np.full(len(GENRES), 0.01, dtype=np.float32)  # no poster: every genre
    no_poster = without(val, "image")
    probs, decisions = model.predict(no_poster)
    assert not np.array_equal(decisions, apply_thresholds(probs, model.thresholds, min_one=True))
    expected = evaluate(labels_matrix(val, len(GENRES)), probs, decisions, GENRES)
    result = score_examples(model, no_poster, GENRES)
    assert result["micro_f1"] == expected["micro_f1"] and result["samples_f1"] == expected["samples_f1"]
    assert [(r["tp"], r["fp"]) for r in result["per_genre"]] == [(r["tp"], r["fp"]) for r in expected["per_genre"]]


# ---------------------------------------------------------------- a local encoder checkpoint


@pytest.mark.slow
def test_a_local_torchvision_checkpoint_is_an_image_encoder_recorded_in_the_artifact(data, tmp_path):
    import torchvision

    from ml.engine.artifact import ArtifactError

    torch.manual_seed(0)
    checkpoint = tmp_path / "my-resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), checkpoint)
    train, val = data
    config = get_config(
        {
            "preset": "effnet-frozen-image",
            "image_encoder": "torchvision",
            "image_arch": "resnet18",
            "image_model_path": str(checkpoint),
            "image_size": 32,
            "epochs": 3,
            "hidden_dim": 16,
            "num_workers": 0,
            "name": "my-resnet18",
        }
    )
    cache = str(tmp_path / "cache")
    model = fit(config, GENRES, train[:30], val[:12], device="cpu", cache_dir=cache)
    assert model.parts.frozen.encoder("image").dim == 512
    model.save(tmp_path / "artifact")
    record = json.loads((tmp_path / "artifact" / "config.json").read_text())["frozen_encoders"]["image"]
    assert record["name"] == "torchvision" and record["arch"] == "resnet18"
    assert record["path"] == str(checkpoint.resolve()) and len(record["weights_sha256"]) == 64
    loaded = load_model(tmp_path / "artifact", device="cpu", cache_dir=cache)
    assert np.array_equal(loaded.predict_proba(val[:12]), model.predict_proba(val[:12]))
    # other weights in that file: the model refuses to load rather than mis-predict
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), checkpoint)
    from ml.engine.identity import file_sha256

    file_sha256.cache_clear()
    with pytest.raises(ArtifactError, match="other weights"):
        load_model(tmp_path / "artifact", device="cpu")


def test_the_knn_member_is_fitted_on_val_and_travels_in_the_artifact(meancolour, data, tmp_path):
    train, val = data
    logs = []
    model = fit(fused_config(knn_k=5, epochs=2, hidden_dim=4), GENRES, train, val, device="cpu", log=logs.append)
    knn = model.model.knn
    assert knn is not None and knn.labels.shape == (len(train), len(GENRES))
    assert any("kNN member (k=5): weight" in line for line in logs)
    # the neighbours' votes alone name the genre on this data (text and colour both do)
    text, image, has_text, has_image = model.model.standardised(
        next(model.parts.frozen_batches(model.parts.frozen_arrays(val), len(val)))
    )
    votes = knn(text, image, has_text, has_image).numpy()
    truth = labels_matrix(val, len(GENRES)).argmax(1)
    assert (votes.argmax(1) == truth).mean() >= 0.9
    # a 2-epoch head is weak: mixing in the neighbours lowers val log-loss, so some weight is chosen
    assert float(knn.alpha) > 0
    model.save(tmp_path / "artifact")
    loaded = load_model(tmp_path / "artifact", device="cpu")
    assert float(loaded.model.knn.alpha) == float(knn.alpha)
    assert np.array_equal(loaded.predict_proba(val), model.predict_proba(val))
    with pytest.raises(ValueError, match="knn_k"):
        get_config({"preset": "minilm-finetune-text", "knn_k": 5})


@pytest.mark.slow
def test_a_local_sentence_transformers_folder_is_a_text_encoder_recorded_in_the_artifact(data, tmp_path):
    import shutil

    from ml.engine.identity import minilm_path

    folder = tmp_path / "my-text-model"
    shutil.copytree(minilm_path(), folder)  # any sentence-transformers folder would do
    train, val = data
    config = get_config(
        {
            "preset": "minilm-frozen-text",
            "text_encoder": "st_folder",
            "text_model_path": str(folder),
            "epochs": 2,
            "hidden_dim": 8,
            "name": "my-text-model",
        }
    )
    model = fit(config, GENRES, train[:20], val[:10], device="cpu")
    model.save(tmp_path / "artifact")
    record = json.loads((tmp_path / "artifact" / "config.json").read_text())["frozen_encoders"]["text"]
    assert record["name"] == "st_folder" and record["path"] == str(folder.resolve())
    assert len(record["weights_sha256"]) == 64
    loaded = load_model(tmp_path / "artifact", device="cpu")
    assert np.array_equal(loaded.predict_proba(val[:10]), model.predict_proba(val[:10]))


# ---------------------------------------------------------------- fallback heads


def text_led_examples(n: int, seed: int) -> list[Example]:
    """The words always name the genre, the poster colour 85 % of the time: a fused head
    leans on the words, so without them it falls below a model of the posters alone."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        g = int(rng.integers(3))
        shown = g if rng.random() < 0.85 else int(rng.integers(3))
        words = " ".join(rng.choice(WORDS[g], 4))
        poster = image_bytes(24, 36, colour=COLOURS[shown], noise=20, seed=seed * 1000 + i)
        out.append(Example(key=f"i{seed}-{i}", text=words, image=poster, labels=[g], title=f"Film {i}", year=1990))
    return out


@pytest.mark.slow
def test_a_fused_model_without_text_does_at_least_as_well_as_the_image_only_model(meancolour, tmp_path):
    from ml.engine.train import one_modality_config

    train, val = text_led_examples(120, seed=3), text_led_examples(60, seed=4)
    y_val = labels_matrix(val, len(GENRES))
    logs = []
    config = fused_config(fallback_heads=True, knn_k=5, epochs=15)
    fused = fit(config, GENRES, train, val, device="cpu", log=logs.append)
    plain = fit(fused_config(knn_k=5, epochs=15), GENRES, train, val, device="cpu")
    alone = {m: fit(one_modality_config(config, m), GENRES, train, val, device="cpu") for m in ("text", "image")}
    # Each fallback head is the one-modality model's head, trained the same way.
    for m, model in alone.items():
        mine, theirs = fused.model.fallback[m].state_dict(), model.model.head.state_dict()
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[k], theirs[k]) for k in mine), m
    # The fused heads themselves train as without fallback heads.
    mine, theirs = fused.model.head.state_dict(), plain.model.head.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    assert sum(line.startswith("input mix (") for line in logs) == 3
    # Without text, the fused heads alone fall below the image-only model on this data; with
    # the fallback heads the fused model does at least as well (its mix is chosen on val under
    # that floor), and its calibrated log-loss is at most the one-input model's for either
    # input removed (the grid holds that model).
    assert micro_f1(fused, val) >= micro_f1(plain, val)  # with both inputs: never below the plain model
    image_only = micro_f1(alone["image"], val)
    assert micro_f1(plain, val, "text") < image_only
    assert micro_f1(fused, val, "text") >= image_only
    assert micro_f1(fused, val, "image") >= micro_f1(alone["text"], val)
    for drop, left in (("text", "image"), ("image", "text")):
        probs = fused.predict_proba(without(val, drop))
        assert fused.last_input_sets == [left] * len(val)
        mine = _log_loss(y_val, probs)
        assert mine <= _log_loss(y_val, alone[left].predict_proba(val)) + 1e-6, drop
    # Without text, the fused heads alone fall below the image-only model on this data; with
    # the fallback heads the fused model does at least as well (its mix is chosen on val under
    # that floor), and its calibrated log-loss is at most the one-input model's for either
    # input removed (the grid holds that model).
    image_only = micro_f1(alone["image"], val)
    assert micro_f1(plain, val, "text") < image_only
    assert micro_f1(fused, val, "text") >= image_only
    assert micro_f1(fused, val, "image") >= micro_f1(alone["text"], val)
    # The heads and the chosen mix travel in the artifact.
    fused.save(tmp_path / "artifact")
    loaded = load_model(tmp_path / "artifact", device="cpu")
    for drop in ("text", "image"):
        shown = without(val, drop)
        assert np.array_equal(loaded.predict_proba(shown), fused.predict_proba(shown))
    assert torch.equal(loaded.model.input_mix, fused.model.input_mix)


def _log_loss(y, p) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def test_fallback_heads_need_frozen_features_and_leave_a_plain_model_as_it_was():
    with pytest.raises(ValueError, match="fallback_heads"):
        get_config({"preset": "minilm+effnet-finetune-gated", "fallback_heads": True})
    from ml.engine.model import GenreModel

    plain = GenreModel(get_config("minilm+effnet-frozen-concat"), 3, text_dim=4, image_dim=4)
    assert plain.fallback is None and "input_mix" not in plain.state_dict()
    text_only = GenreModel(
        get_config({"preset": "minilm-frozen-text", "fallback_heads": True}), 3, text_dim=4, image_dim=0
    )
    assert text_only.fallback is None  # nothing can be missing from a one-input model
