"""ModelVersion immutability, the production alias, and pure prediction-field logic."""

import threading

import numpy as np
import pytest
from django.db import connection

from ml.models import AliasChange, DatasetSnapshot, ImmutableRecordError, ModelAlias, ModelVersion
from ml.services.inference import prediction_fields
from ml.services.registry import production_version, promote


def make_version(snapshot, n=1, **fields):
    values = dict(
        snapshot=snapshot,
        config_name="tfidf-linear",
        config={"name": "tfidf-linear"},
        genres=["A", "B"],
        thresholds=[0.5, 0.4],
        artifact_path=f"models/x{n}",
        artifact_files=["config.json", "model.safetensors"],
        checksum=f"{n:064d}",
    )
    values.update(fields)
    return ModelVersion.objects.create(**values)


@pytest.fixture
def snapshot(db):
    return DatasetSnapshot.objects.create(content_hash="f" * 64, genres=["A", "B"])


def test_model_version_artifact_fields_are_immutable(snapshot):
    version = make_version(snapshot)
    version.name = "renamed"
    version.notes = "fine to edit"
    version.save()
    version.thresholds = [0.9, 0.9]
    with pytest.raises(ImmutableRecordError, match="thresholds"):
        version.save()
    version.refresh_from_db()
    assert version.thresholds == [0.5, 0.4] and version.name == "renamed"
    with pytest.raises(ImmutableRecordError, match="checksum"):
        ModelVersion.objects.filter(pk=version.pk).update(checksum="0" * 64)
    ModelVersion.objects.filter(pk=version.pk).update(notes="bulk note edit is allowed")


def test_promote_moves_the_single_production_alias(snapshot, django_user_model):
    user = django_user_model.objects.create_user("staff")
    first, second = make_version(snapshot, 1), make_version(snapshot, 2)
    assert production_version() is None
    promote(first.pk, user)
    promote(second.pk, user)
    assert ModelAlias.objects.filter(name="production").count() == 1
    assert production_version() == second
    history = list(AliasChange.objects.order_by("id").values_list("previous_id", "model_version_id"))
    assert history == [(None, first.pk), (first.pk, second.pk)]


def test_promote_is_atomic(snapshot, monkeypatch):
    first, second = make_version(snapshot, 1), make_version(snapshot, 2)
    promote(first.pk)

    def broken_create(*args, **kwargs):
        raise RuntimeError("audit write failed")

    monkeypatch.setattr(AliasChange.objects, "create", broken_create)
    with pytest.raises(RuntimeError):
        promote(second.pk)
    assert production_version() == first  # the alias move was rolled back with the audit row
    with pytest.raises(ModelVersion.DoesNotExist):
        promote(999_999)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_promotions_leave_one_production_row():
    snapshot = DatasetSnapshot.objects.create(content_hash="e" * 64, genres=["A", "B"])
    versions = [make_version(snapshot, n) for n in range(1, 7)]
    errors = []

    def worker(version_id):
        try:
            promote(version_id)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    promote(versions[0].pk)
    threads = [threading.Thread(target=worker, args=(v.pk,)) for v in versions[1:]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert ModelAlias.objects.filter(name="production").count() == 1
    assert AliasChange.objects.count() == 6
    # The history is a chain: each move starts where the previous one ended.
    chain = list(AliasChange.objects.order_by("id").values_list("previous_id", "model_version_id"))
    for (_, before), (previous, _) in zip(chain, chain[1:], strict=False):
        assert previous == before


def test_prediction_fields_queue_scores():
    genres = ["Action", "Comedy", "Drama"]
    thresholds = np.array([0.5, 0.4, 0.6])
    probs = np.array([0.9, 0.41, 0.1])
    decisions = probs >= thresholds
    fields = prediction_fields(genres, thresholds, probs, decisions, ["Drama", "Action", "Western"])
    assert fields["predicted"] == ["Action", "Comedy"]
    assert fields["top_genre"] == "Action" and fields["top_score"] == pytest.approx(0.9)
    assert fields["suggested_add"] == ["Comedy"] and fields["suggested_remove"] == ["Drama"]
    assert fields["disagrees"] is True
    # Drama sits (0.6 - 0.1) / 0.6 below its threshold: the most confident disagreement.
    assert fields["disagreement"] == pytest.approx(0.5 / 0.6)
    # Comedy is 0.01 above a 0.4 threshold: closeness 1 - 0.01 / 0.6.
    assert fields["uncertainty"] == pytest.approx(1 - 0.01 / 0.6)
    assert fields["labels_at_prediction"] == ["Action", "Drama"]  # Western is unknown to the model
    agree = prediction_fields(genres, thresholds, probs, decisions, ["Action", "Comedy"])
    assert agree["disagrees"] is False and agree["disagreement"] == 0.0


@pytest.mark.django_db
def test_prediction_table_indexes_only_what_is_queried():
    """Nothing filters or orders predictions by uncertainty or disagreement since the in-sample
    queues went, so the migrated table carries no index on them (writes stay cheap)."""
    from ml.models import Prediction

    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Prediction._meta.db_table)
    indexed = {tuple(c["columns"]) for c in constraints.values() if c["index"] or c["unique"]}
    assert not any({"uncertainty", "disagrees", "disagreement"} & set(columns) for columns in indexed), indexed
    assert ("movie_id", "model_version_id") in indexed  # the upsert's key stays
