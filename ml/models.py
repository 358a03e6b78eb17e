"""ML records: dataset snapshots, training runs, immutable model versions, the production
alias, evaluations with per-genre metrics, and per-movie predictions.

The logic that fills these lives in ``ml.services``; models only guard their invariants
(snapshot members and model-version artifacts never change once written).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models, transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from base.runs import RunStatus


class ImmutableRecordError(Exception):
    """Raised on an attempt to change a field that is frozen once the record exists."""


class FrozenFieldsQuerySet(models.QuerySet):
    """Refuses queryset.update()/bulk_update() of the model's FROZEN_FIELDS."""

    def update(self, **kwargs):
        frozen = set(kwargs) & set(self.model.FROZEN_FIELDS)
        if frozen:
            raise ImmutableRecordError(
                f"{self.model._meta.verbose_name_plural} are immutable; cannot update {', '.join(sorted(frozen))}."
            )
        return super().update(**kwargs)


class FrozenFieldsModel(models.Model):
    """A record whose FROZEN_FIELDS are fixed at creation; save() refuses to change them."""

    FROZEN_FIELDS: tuple[str, ...] = ()

    objects = FrozenFieldsQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if self.pk is not None:
            attnames = [self._meta.get_field(name).attname for name in self.FROZEN_FIELDS]
            stored = type(self).objects.filter(pk=self.pk).values(*attnames).first()
            if stored is not None:
                changed = [name for name in attnames if stored[name] != getattr(self, name)]
                if changed:
                    raise ImmutableRecordError(
                        f"{self._meta.verbose_name_plural} are immutable; cannot change {', '.join(changed)}."
                    )
        super().save(*args, **kwargs)


# --- Dataset snapshots -----------------------------------------------------------


class DatasetSnapshot(FrozenFieldsModel):
    """A frozen training set: which movies, with which labels, in which split.

    ``content_hash`` is sha256 over the sorted member ids, their labels, poster
    derivative checksums, text checksums, the split and its parameters and the genre
    list; two snapshots with the same hash hold the same data. ``hash_version`` says
    what the text checksums cover: 2 every text field a preset may read (title, year,
    overview), 1 (snapshots built before) the overview only. Only the name may change
    after creation.
    """

    FROZEN_FIELDS = (
        "seed",
        "fractions",
        "min_genre_count",
        "keep_rare_genres",
        "genres",
        "content_hash",
        "hash_version",
        "n_members",
        "split_counts",
        "report",
    )

    name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    seed = models.IntegerField(default=13)
    fractions = models.JSONField(default=list)  # [train, val, test]
    min_genre_count = models.PositiveIntegerField(default=10)
    keep_rare_genres = models.BooleanField(default=False)
    # Genre names in model column order.
    genres = models.JSONField(default=list)
    content_hash = models.CharField(max_length=64, db_index=True)
    # 1 for snapshots built before the text checksums covered title and year (build_snapshot sets it)
    hash_version = models.PositiveSmallIntegerField(default=1)
    n_members = models.PositiveIntegerField(default=0)
    split_counts = models.JSONField(default=dict)  # {"train": n, "val": n, "test": n}
    # Build report: exclusions by reason, rare genres, genre counts per split, label sources.
    report = models.JSONField(default=dict)

    class Meta:
        ordering = ["-created_at", "-id"]
        get_latest_by = "created_at"

    def __str__(self) -> str:
        label = self.name or f"snapshot {self.pk}"
        return f"{label} ({self.n_members} movies, {self.content_hash[:10]})"


class SnapshotMember(models.Model):
    """One movie of a snapshot with its frozen labels (indices into snapshot.genres).

    The movie link has no database constraint so deleting a movie never rewrites
    history; loaders report members whose movie is gone.
    """

    class Split(models.TextChoices):
        TRAIN = "train", "Train"
        VAL = "val", "Validation"
        TEST = "test", "Test"

    snapshot = models.ForeignKey(DatasetSnapshot, on_delete=models.CASCADE, related_name="members")
    movie = models.ForeignKey(
        "catalog.Movie", on_delete=models.DO_NOTHING, db_constraint=False, related_name="snapshot_memberships"
    )
    split = models.CharField(max_length=5, choices=Split.choices)
    labels = models.JSONField(default=list)
    poster_checksum = models.CharField(max_length=64, blank=True)
    # sha256 of the text fields as they were (ml.services.data.text_checksum; the overview
    # alone in a hash_version 1 snapshot): loaders report drift.
    text_checksum = models.CharField(max_length=64, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["snapshot", "movie"], name="snapshotmember_unique")]
        indexes = [models.Index(fields=["snapshot", "split", "movie"])]

    def __str__(self) -> str:
        return f"{self.snapshot_id}:{self.movie_id} ({self.split})"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ImmutableRecordError("Snapshot members are frozen; build a new snapshot instead.")
        super().save(*args, **kwargs)


# --- Training and model versions -------------------------------------------------


class TrainingRun(models.Model):
    # The one run vocabulary (base.runs), shared with jobs and imports.
    Status = RunStatus

    snapshot = models.ForeignKey(DatasetSnapshot, on_delete=models.PROTECT, related_name="training_runs")
    config_name = models.CharField(max_length=120, blank=True, db_index=True)
    config = models.JSONField(default=dict)
    seed = models.IntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Seconds per phase: load_data, fit, save, evaluate, total.
    timings = models.JSONField(default=dict, blank=True)
    device = models.CharField(max_length=64, blank=True)
    library_versions = models.JSONField(default=dict, blank=True)
    code_version = models.CharField(max_length=64, blank=True)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    # Per-epoch curves from the engine: [{epoch, train_loss, val_loss, val_micro_f1, ...}].
    history = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"run {self.pk} {self.config_name} ({self.status})"

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class ModelVersion(FrozenFieldsModel):
    """A trained model as stored: the artifact files plus everything needed to use it.

    Everything in FROZEN_FIELDS is fixed at creation; only the display name and notes
    may change later.
    """

    FROZEN_FIELDS = (
        "uid",
        "training_run",
        "snapshot",
        "config_name",
        "config",
        "genres",
        "thresholds",
        "thresholds_by_inputs",
        "normaliser",
        "artifact_path",
        "artifact_files",
        "checksum",
        "library_versions",
    )

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200, blank=True)
    notes = models.TextField(blank=True)
    training_run = models.OneToOneField(
        TrainingRun, null=True, blank=True, on_delete=models.PROTECT, related_name="model_version"
    )
    snapshot = models.ForeignKey(DatasetSnapshot, on_delete=models.PROTECT, related_name="model_versions")
    config_name = models.CharField(max_length=120, blank=True)
    config = models.JSONField(default=dict)
    genres = models.JSONField(default=list)
    thresholds = models.JSONField(default=list)  # per genre, for a movie with every input ("all")
    # A text+poster model's thresholds for a movie missing one input: {"text": [...], "image": [...]}
    # (ml.engine.inputs); empty for other models and for versions stored before they existed.
    thresholds_by_inputs = models.JSONField(default=dict, blank=True)
    normaliser = models.JSONField(default=dict, blank=True)
    # Folder in default_storage holding model.safetensors + config.json (+ anything else listed).
    artifact_path = models.CharField(max_length=255)
    artifact_files = models.JSONField(default=list)
    checksum = models.CharField(max_length=64)
    library_versions = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name or f"v{self.pk} {self.config_name}"

    def thresholds_for(self, inputs: str) -> list[float]:
        """Per-genre thresholds for a prediction made with this input set ("all", "text",
        "image"), as the loaded model's ``TrainedModel.thresholds_for`` picks them."""
        return self.thresholds_by_inputs.get(inputs) or self.thresholds


@receiver(post_delete, sender=ModelVersion, dispatch_uid="ml_remove_model_artifact")
def _remove_artifact_files(sender, instance: ModelVersion, **kwargs) -> None:
    """A deleted version takes its artifact files with it, once the delete has committed."""
    from django.core.files.storage import default_storage

    names = [f"{instance.artifact_path}/{name}" for name in instance.artifact_files]

    def remove() -> None:
        for name in names:
            try:
                default_storage.delete(name)
            except OSError:  # already gone, or storage unreachable: nothing to roll back
                pass

    transaction.on_commit(remove)


class ModelAlias(models.Model):
    """A named pointer to a model version ("production"); moved by ml.services.registry.promote."""

    PRODUCTION = "production"

    name = models.CharField(max_length=64, unique=True)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="aliases")
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name_plural = "model aliases"

    def __str__(self) -> str:
        return f"{self.name} -> {self.model_version_id}"


class AliasChange(models.Model):
    """Append-only history of alias moves (who promoted what, when)."""

    alias = models.CharField(max_length=64, db_index=True)
    previous = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="alias_changes")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.alias}: {self.previous_id} -> {self.model_version_id}"


# --- Evaluation ------------------------------------------------------------------


class Evaluation(models.Model):
    """Metrics of one model version on one split of one snapshot (re-evaluating replaces it)."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="evaluations")
    snapshot = models.ForeignKey(DatasetSnapshot, on_delete=models.PROTECT, related_name="evaluations")
    split = models.CharField(max_length=5, choices=SnapshotMember.Split.choices)
    n_examples = models.PositiveIntegerField(default=0)
    micro_f1 = models.FloatField(null=True)
    macro_f1 = models.FloatField(null=True)
    samples_f1 = models.FloatField(null=True)
    roc_auc_macro = models.FloatField(null=True)
    # Every headline number from ml.engine.metrics.evaluate (everything but per-genre rows).
    metrics = models.JSONField(default=dict)
    # For plots: {"pr_curves": {genre: {...}}, "calibration": {...}, "per_genre_calibration": {...},
    # "confusion": {genre: {tp, fp, fn, tn}}}
    curves = models.JSONField(default=dict)
    duration_s = models.FloatField(null=True, blank=True)
    device = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["model_version", "snapshot", "split"], name="evaluation_unique")]

    def __str__(self) -> str:
        return f"eval of {self.model_version_id} on {self.snapshot_id}/{self.split}"


class GenreMetric(models.Model):
    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="genre_metrics")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="genre_metrics")
    snapshot = models.ForeignKey(DatasetSnapshot, on_delete=models.PROTECT, related_name="+")
    split = models.CharField(max_length=5, choices=SnapshotMember.Split.choices)
    genre = models.CharField(max_length=64)
    threshold = models.FloatField(null=True)
    f1 = models.FloatField()
    precision = models.FloatField()
    recall = models.FloatField()
    roc_auc = models.FloatField(null=True)
    pr_auc = models.FloatField(null=True)
    support = models.PositiveIntegerField()
    tp = models.PositiveIntegerField(default=0)
    fp = models.PositiveIntegerField(default=0)
    fn = models.PositiveIntegerField(default=0)
    tn = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["genre"]
        constraints = [models.UniqueConstraint(fields=["evaluation", "genre"], name="genremetric_unique")]
        indexes = [models.Index(fields=["model_version", "split", "genre"])]

    def __str__(self) -> str:
        return f"{self.genre} F1 {self.f1:.3f}"


# --- Predictions -----------------------------------------------------------------


class Prediction(models.Model):
    """A model version's output for a movie; one row per (movie, model version).

    ``uncertainty`` (0..1, 1 = some genre sits right on its threshold), ``disagrees`` and
    ``disagreement`` (0..1, how far past the threshold the most confident disagreeing genre
    is) are data on the prediction (the catalog's badge, the API); they are in-sample (the
    model judging labels it was trained on), so no review queue or filter is built on them:
    the queues read the out-of-fold label audit (AuditScore, LabelIssue).
    ``labels_at_prediction`` records the labels the comparison was made against.
    """

    movie = models.ForeignKey("catalog.Movie", on_delete=models.CASCADE, related_name="predictions")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="predictions")
    scores = models.JSONField(default=dict)  # {genre: probability}
    predicted = models.JSONField(default=list)  # genre names, highest score first
    top_genre = models.CharField(max_length=64, blank=True)
    top_score = models.FloatField(default=0.0)
    uncertainty = models.FloatField(default=0.0)
    disagrees = models.BooleanField(default=False)
    disagreement = models.FloatField(default=0.0)
    # Genres in the prediction but not the labels, and the other way round.
    suggested_add = models.JSONField(default=list)
    suggested_remove = models.JSONField(default=list)
    labels_at_prediction = models.JSONField(default=list)
    # The inputs the model had (ml.engine.inputs): "all", or "text" / "image" when a text+poster
    # model missed one; the decisions and the fields above used that set's thresholds.
    inputs = models.CharField(max_length=5, default="all")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # No index on uncertainty / disagreement: nothing filters or orders by them since the
        # in-sample queues went (the FK index serves per-version lookups).
        constraints = [
            models.UniqueConstraint(fields=["movie", "model_version"], name="prediction_unique_movie_version")
        ]

    def __str__(self) -> str:
        return f"{self.movie_id} by {self.model_version_id}: {', '.join(self.predicted)}"


# --- Embedding store -----------------------------------------------------------------


class Embedding(models.Model):
    """One frozen-encoder vector: (space, digest) -> float16 bytes, shared by every worker.

    ``space`` names the encoder identity (family, pretrained weights identity, output settings,
    device type: ml.engine.features); ``digest`` is the sha256 of the overview text or the
    poster derivative's bytes, so a changed overview or poster is a new row, never a stale
    vector. Filled by training, evaluation, prediction and ``embed_catalog``; rows no movie or
    kept encoder uses any more are removed by ``prune_embeddings`` (ml.services.embeddings).
    """

    space = models.CharField(max_length=200)
    digest = models.CharField(max_length=64)
    dim = models.PositiveIntegerField()
    vector = models.BinaryField(help_text="float16, little-endian, dim values")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["space", "digest"], name="embedding_unique_space_digest")]
        # The newest row of a space in one index probe: ml.services.similar's cache stamp.
        indexes = [models.Index(fields=["space", "id"], name="embedding_space_id_idx")]

    def __str__(self) -> str:
        return f"{self.space} {self.digest[:12]} ({self.dim}-d)"


# --- Label audit ------------------------------------------------------------------


class AuditRun(models.Model):
    """One out-of-fold label audit of the catalog (ml.services.audit): which preset's frozen
    features, how many folds, the data it saw (hash over movie ids, labels and label
    versions), how long it took and what it found. The queues read the latest succeeded one."""

    Status = RunStatus

    config_name = models.CharField(max_length=120)
    config = models.JSONField(default=dict)
    folds = models.PositiveSmallIntegerField(default=5)
    seed = models.IntegerField(default=0)
    data_hash = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    genres = models.JSONField(default=list)
    thresholds = models.JSONField(default=list)  # per genre, tuned on the out-of-fold probabilities
    # labeled, unlabeled, issues, missing, wrong, queued, movies_with_issues, per_genre {name: n}, l2
    counts = models.JSONField(default=dict, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"audit {self.pk} {self.config_name} ({self.status})"


class AuditScore(models.Model):
    """A movie's scores in one audit: out-of-fold for a labeled movie, from the all-labels
    head for an unlabeled one; ``uncertainty`` is the expected number of wrong genre
    decisions (ranks "model unsure")."""

    audit = models.ForeignKey(AuditRun, on_delete=models.CASCADE, related_name="scores")
    movie = models.ForeignKey("catalog.Movie", on_delete=models.CASCADE, related_name="audit_scores")
    scores = models.JSONField(default=dict)  # {genre: probability}
    labeled = models.BooleanField(default=True)  # had labels when audited
    label_version = models.PositiveIntegerField(default=0)  # the movie's label version audited
    uncertainty = models.FloatField(default=0.0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["audit", "movie"], name="auditscore_unique")]
        indexes = [models.Index(fields=["audit", "-uncertainty"], name="auditscore_unsure_idx")]

    def __str__(self) -> str:
        return f"{self.movie_id} in audit {self.audit_id}"


class LabelIssue(models.Model):
    """A (movie, genre) where an audit's out-of-fold score and the label disagree.

    ``kind``: "missing" (scored at or above the genre's threshold, not labeled) or "wrong"
    (labeled, scored below). ``flagged``: confident learning (cleanlab) calls it a label
    issue; ``quality``: cleanlab's per-class label quality (0 = the label is surely wrong);
    ``margin``: how far past its threshold the score sits against the label (the queue order).
    Unflagged rows are the model's plain suggestions (unlabeled and unsure queues). An issue
    is open until ``resolution`` is set: relabeled (the labels now agree), rejected (a person
    kept the label), reviewed (a person confirmed the whole set)."""

    class Kind(models.TextChoices):
        MISSING = "missing", "probably missing"
        WRONG = "wrong", "probably wrong"

    class Resolution(models.TextChoices):
        OPEN = "", "open"
        RELABELED = "relabeled", "labels changed to agree"
        REJECTED = "rejected", "suggestion rejected"
        REVIEWED = "reviewed", "labels confirmed"

    audit = models.ForeignKey(AuditRun, on_delete=models.CASCADE, related_name="issues")
    movie = models.ForeignKey("catalog.Movie", on_delete=models.CASCADE, related_name="label_issues")
    genre = models.ForeignKey("catalog.Genre", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    flagged = models.BooleanField(default=False)
    queued = models.BooleanField(default=False)  # flagged and confident enough for "likely label errors"
    quality = models.FloatField()
    # how far past the genre's threshold the score sits against the label (0..1): the issue score
    margin = models.FloatField(default=0.0)
    probability = models.FloatField()
    threshold = models.FloatField()
    resolution = models.CharField(max_length=12, choices=Resolution.choices, default="", blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-margin", "id"]
        constraints = [models.UniqueConstraint(fields=["audit", "movie", "genre"], name="labelissue_unique")]
        indexes = [
            models.Index(fields=["audit", "queued", "resolution", "-margin"], name="labelissue_queue_idx"),
            models.Index(fields=["movie", "audit"], name="labelissue_movie_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.movie_id} {self.evidence()}"

    @property
    def is_open(self) -> bool:
        return not self.resolution

    def evidence(self) -> str:
        return f"{self.kind}: {self.genre.name} {self.probability:.2f} (threshold {self.threshold:.2f})"


class LabelReview(models.Model):
    """A person's verdict on a movie's whole label set: who, when, which label version
    (after their change, if any), against which audit."""

    class Verdict(models.TextChoices):
        CONFIRMED = "confirmed", "labels are right"
        FIXED = "fixed", "labels fixed"
        SKIPPED = "skipped", "skipped"

    movie = models.ForeignKey("catalog.Movie", on_delete=models.CASCADE, related_name="label_reviews")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    audit = models.ForeignKey(AuditRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="reviews")
    label_version = models.PositiveIntegerField()
    labels = models.JSONField(default=list)  # genre names of the reviewed set
    verdict = models.CharField(max_length=12, choices=Verdict.choices)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["movie", "-created_at"], name="labelreview_movie_idx")]

    def __str__(self) -> str:
        return f"{self.movie_id} {self.verdict} by {self.user_id} at v{self.label_version}"
