"""Fill a database with N synthetic movies, fast: genres, movies, labels (+ import history),
optional posters, and optionally a synthetic model version with evaluation and predictions.

Used for the page-latency benchmark at 100k movies, screenshots and local demos; never for
quality figures. Rows go in with bulk_create in batches, one transaction per batch, with
progress printed per batch.

    python manage.py seed_synthetic --movies 100000 --posters 40 --predictions
    python manage.py seed_synthetic --movies 100000 --posters 40 --embeddings   # similar-movies latency
    python manage.py seed_synthetic --movies 100000 --posters 40 --predictions --audit   # + review queues

``--audit`` also writes one finished synthetic label audit (a score per new movie and its
label issues, the derived fields from the engine's own functions) with a planted issue on
about 5 % of the movies, so the review queue pages have items (latency only).

``--embeddings`` also fills the embedding store with random unit vectors (float16) in the embed
config's text space for every new movie and, with ``--posters``, in its image space under a
synthetic derivative checksum per poster: for latency figures only, never for quality.
"""

from __future__ import annotations

import hashlib
import io
import random
import time
import uuid

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from catalog.models import MANUAL_SOURCE, Genre, LabelChange, LabelOrigin, Movie, MovieGenre, Poster
from ml.engine.audit import QUEUE_MIN_MARGIN, expected_errors, issue_margin
from ml.models import (
    AuditRun,
    AuditScore,
    DatasetSnapshot,
    Embedding,
    Evaluation,
    GenreMetric,
    LabelIssue,
    ModelVersion,
    Prediction,
    TrainingRun,
)
from ml.services.embeddings import text_digest
from ml.services.inference import prediction_fields
from ml.services.registry import promote

# The 19 TMDB movie genres with their TMDB ids, and relative frequencies like the real catalog.
GENRES = [
    (28, "Action", 14),
    (12, "Adventure", 8),
    (16, "Animation", 4),
    (35, "Comedy", 20),
    (80, "Crime", 8),
    (99, "Documentary", 5),
    (18, "Drama", 30),
    (10751, "Family", 5),
    (14, "Fantasy", 5),
    (36, "History", 3),
    (27, "Horror", 9),
    (10402, "Music", 3),
    (9648, "Mystery", 5),
    (10749, "Romance", 10),
    (878, "Science Fiction", 6),
    (10770, "TV Movie", 2),
    (53, "Thriller", 14),
    (10752, "War", 2),
    (37, "Western", 1),
]
# Genre-flavoured words so overviews carry signal a text model can pick up.
VOCAB = {
    "Action": "explosive chase mercenary heist showdown",
    "Adventure": "quest journey treasure island expedition",
    "Animation": "animated talking toy cartoon colourful",
    "Comedy": "hilarious awkward wedding prank misfit",
    "Crime": "detective mob cartel robbery corrupt",
    "Documentary": "footage interviews true story archive",
    "Drama": "family grief struggle redemption secret",
    "Family": "kids holiday puppy parents magic",
    "Fantasy": "wizard dragon kingdom sorcery prophecy",
    "History": "empire revolution century king battle",
    "Horror": "haunted demon blood cabin nightmare",
    "Music": "band concert singer rhythm tour",
    "Mystery": "clue disappearance puzzle riddle suspect",
    "Romance": "love affair heart summer kiss",
    "Science Fiction": "alien planet spaceship android future",
    "TV Movie": "television special network pilot",
    "Thriller": "conspiracy hostage stalker deadly escape",
    "War": "soldiers front platoon trenches invasion",
    "Western": "outlaw sheriff frontier saloon cattle",
}
FILLER = "a an the who when after must while finds their new old young town city life world".split()
TITLE_A = "Silent Broken Last Hidden Golden Dark Lost Crimson Wild Final Distant Midnight Burning Frozen".split()
TITLE_B = "River Empire Promise Signal Horizon Garden Machine Harbor Witness Frontier Orchard Echo Kingdom".split()
POSTER_COLOURS = [(200, 60, 50), (40, 90, 170), (30, 130, 90), (150, 90, 180), (220, 160, 40), (60, 60, 70)]


def _poster_jpeg(rng: random.Random, index: int) -> bytes:
    from PIL import Image, ImageDraw

    base = POSTER_COLOURS[index % len(POSTER_COLOURS)]
    picture = Image.new("RGB", (200, 300), base)
    draw = ImageDraw.Draw(picture)
    for _ in range(12):
        x, y = rng.randrange(200), rng.randrange(300)
        colour = tuple(min(255, max(0, c + rng.randrange(-80, 80))) for c in base)
        draw.ellipse((x - 40, y - 40, x + 40, y + 40), fill=colour)
    draw.rectangle((0, 240, 200, 300), fill=(20, 22, 30))
    buf = io.BytesIO()
    picture.save(buf, "JPEG", quality=80)
    return buf.getvalue()


class Command(BaseCommand):
    help = "Fill the database with N synthetic movies (labels, optional posters and predictions)."

    def add_arguments(self, parser):
        parser.add_argument("--movies", type=int, default=1000, help="how many movies to create")
        parser.add_argument("--batch", type=int, default=5000, help="rows per bulk insert / transaction")
        parser.add_argument(
            "--posters",
            type=int,
            default=0,
            help="generate this many distinct poster images and share them round-robin (0: none)",
        )
        parser.add_argument(
            "--predictions",
            action="store_true",
            help="also create a synthetic model version (promoted to production) with "
            "an evaluation and a prediction for every new movie",
        )
        parser.add_argument(
            "--embeddings",
            action="store_true",
            help="also store a random vector per new movie's overview (and poster, with --posters) in the "
            "embed config's spaces (for the similar-movies latency benchmark)",
        )
        parser.add_argument(
            "--audit",
            action="store_true",
            help="also write one finished synthetic label audit over the new movies (scores and label issues, "
            "a planted issue on ~5%% of them) so the review queues have items",
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--source-prefix", default="syn", help="source_id prefix")

    def handle(self, *args, **opts):
        n, batch = opts["movies"], opts["batch"]
        if n < 1 or batch < 1:
            raise CommandError("--movies and --batch must be positive")
        rng = random.Random(opts["seed"])
        genres = self._genres()
        weights = [w for _, _, w in GENRES]
        poster_names = self._posters(rng, opts["posters"])
        prefix = f"{opts['source_prefix']}-{uuid.uuid4().hex[:8]}"  # unique per run: reruns add, never clash
        started = time.monotonic()
        version = self._model_version(genres) if opts["predictions"] else None
        self.spaces = self._embedding_spaces() if opts["embeddings"] else {}
        self.vectors = np.random.default_rng(opts["seed"])
        self.audit = self._audit_run(genres) if opts["audit"] else None
        created = 0
        while created < n:
            size = min(batch, n - created)
            with transaction.atomic():
                self._batch(rng, genres, weights, poster_names, version, prefix, created, size)
            created += size
            rate = created / max(time.monotonic() - started, 1e-6)
            self.stdout.write(f"{created:,}/{n:,} movies ({100 * created / n:.0f}%, {rate:,.0f}/s)")
        if version is not None:
            self._promote(version)
        if self.audit is not None:
            self._finish_audit(started)
        self.stdout.write(self.style.SUCCESS(f"created {created:,} movies in {time.monotonic() - started:.1f} s"))

    def _genres(self) -> list[Genre]:
        out = []
        for tmdb_id, name, _ in GENRES:
            genre, _ = Genre.objects.get_or_create(name=name, defaults={"tmdb_id": tmdb_id})
            out.append(genre)
        return out

    def _posters(self, rng: random.Random, count: int) -> list[str]:
        names = []
        for i in range(count):
            names.append(
                default_storage.save(f"posters/synthetic/poster-{i:03d}.jpg", ContentFile(_poster_jpeg(rng, i)))
            )
        return names

    def _batch(self, rng, genres, weights, poster_names, version, prefix, offset, size):
        movies, label_sets = [], []
        for i in range(offset, offset + size):
            k = rng.choices([1, 2, 3, 4], weights=[30, 40, 22, 8])[0]
            chosen = []
            while len(chosen) < k:
                g = rng.choices(range(len(genres)), weights=weights)[0]
                if g not in chosen:
                    chosen.append(g)
            words = []
            for g in chosen:
                words += rng.sample(VOCAB[genres[g].name].split(), 3)
            words += rng.sample(FILLER, 8)
            rng.shuffle(words)
            year = rng.randint(1930, 2024)
            movies.append(
                Movie(
                    title=f"{rng.choice(TITLE_A)} {rng.choice(TITLE_B)} {i + 1}",
                    overview=(" ".join(words)).capitalize() + ".",
                    year=year,
                    popularity=round(rng.expovariate(1 / 8), 3),
                    original_language="en",
                    source=MANUAL_SOURCE,
                    source_id=f"{prefix}-{i}",
                )
            )
            label_sets.append(chosen)
        Movie.objects.bulk_create(movies, batch_size=2000)  # ids come back on Postgres and SQLite
        labels, history, posters = [], [], []
        for movie, chosen in zip(movies, label_sets, strict=False):
            for g in chosen:
                labels.append(MovieGenre(movie=movie, genre=genres[g], source=LabelOrigin.IMPORTED))
                history.append(
                    LabelChange(
                        movie=movie, genre=genres[g], action=LabelChange.Action.ADDED, origin=LabelOrigin.IMPORTED
                    )
                )
            if poster_names:
                name = poster_names[movie.pk % len(poster_names)]
                # Shared originals, not yet checked: preprocess_posters decodes them and writes
                # each movie its own derivative (it never deletes originals).
                posters.append(Poster(movie=movie, original=name, status=Poster.Status.PENDING))
        MovieGenre.objects.bulk_create(labels, batch_size=5000)
        LabelChange.objects.bulk_create(history, batch_size=5000)
        if self.spaces:
            self._embeddings(movies, posters, prefix)
        Poster.objects.bulk_create(posters, batch_size=5000)
        if version is not None:
            self._predictions(rng, genres, version, movies, label_sets)
        if self.audit is not None:
            self._audit_rows(rng, genres, movies, label_sets)

    # --- synthetic embeddings (latency only) ---------------------------------------------

    def _embedding_spaces(self) -> dict[str, tuple[str, int]]:
        """{"text"/"image": (space, dim)} of the embed config, without loading an encoder."""
        from ml.engine.families import encoder
        from ml.engine.identity import encoder_space
        from ml.services.embeddings import embedding_config

        config = embedding_config()
        out = {}
        for which, name in (("text", config.text_encoder), ("image", config.image_encoder)):
            space = encoder_space(config, which, "cpu")
            if space:
                out[which] = (space, int(encoder(name).dim(config)))
        return out

    def _random_rows(self, which: str, digests: list[str]) -> list[Embedding]:
        space, dim = self.spaces[which]
        values = self.vectors.standard_normal((len(digests), dim), dtype=np.float32)
        values /= np.linalg.norm(values, axis=1, keepdims=True)
        values = values.astype("<f2")
        return [
            Embedding(space=space, digest=d, dim=dim, vector=v.tobytes()) for d, v in zip(digests, values, strict=True)
        ]

    def _embeddings(self, movies, posters, prefix) -> None:
        rows = []
        if "text" in self.spaces:
            rows += self._random_rows("text", sorted({text_digest(m.overview) for m in movies}))
        if "image" in self.spaces and posters:
            for poster in posters:  # a synthetic derivative checksum, so each poster has its own vector
                poster.derivative_checksum = hashlib.sha256(f"{prefix}-poster-{poster.movie_id}".encode()).hexdigest()
            rows += self._random_rows("image", [p.derivative_checksum for p in posters])
        Embedding.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)

    # --- the synthetic model --------------------------------------------------------------

    def _model_version(self, genres):
        names = [g.name for g in genres]
        rng = random.Random(1)
        with transaction.atomic():
            snapshot = DatasetSnapshot.objects.create(
                name="synthetic",
                genres=names,
                content_hash="synthetic-" + uuid.uuid4().hex,
                fractions=[0.7, 0.15, 0.15],
                report={"synthetic": True},
            )
            # Made-up curves of a run that converges, so the report's training plot has data.
            history = [
                {
                    "epoch": e,
                    "train_loss": round(0.7 * 0.85**e + 0.08, 4),
                    "val_loss": round(0.68 * 0.88**e + 0.12 + 0.002 * e, 4),
                    "val_micro_f1": round(0.68 - 0.45 * 0.8**e, 4),
                }
                for e in range(1, 21)
            ]
            run = TrainingRun.objects.create(
                snapshot=snapshot,
                config_name="synthetic",
                status="succeeded",
                device="cpu",
                history=history,
                log="synthetic run (seed_synthetic)",
            )
            version = ModelVersion.objects.create(
                training_run=run,
                name=f"synthetic v{ModelVersion.objects.count() + 1}",
                snapshot=snapshot,
                config_name="synthetic",
                config={"note": "random scores correlated with labels, for demos and benchmarks"},
                genres=names,
                thresholds=[round(rng.uniform(0.3, 0.6), 3) for _ in names],
                artifact_path="",
                checksum="synthetic",
            )
            evaluation = Evaluation.objects.create(
                model_version=version, snapshot=snapshot, split="test", n_examples=1000
            )
            rows, f1s = [], []
            for name, (_, _, weight) in zip(names, GENRES, strict=False):
                support = weight * 12
                recall = rng.uniform(0.45, 0.9)
                precision = rng.uniform(0.45, 0.9)
                tp = int(support * recall)
                fn = support - tp
                fp = int(tp / precision) - tp
                tn = 1000 - tp - fn - fp
                f1 = 2 * tp / max(1, 2 * tp + fp + fn)
                f1s.append(f1)
                rows.append(
                    GenreMetric(
                        evaluation=evaluation,
                        model_version=version,
                        snapshot=snapshot,
                        split="test",
                        genre=name,
                        threshold=0.5,
                        f1=f1,
                        precision=tp / max(1, tp + fp),
                        recall=tp / max(1, support),
                        roc_auc=rng.uniform(0.8, 0.97),
                        pr_auc=rng.uniform(0.4, 0.85),
                        support=support,
                        tp=tp,
                        fp=fp,
                        fn=fn,
                        tn=tn,
                    )
                )
            GenreMetric.objects.bulk_create(rows)
            pr = {}
            for name in names:
                recall = [i / 20 for i in range(21)]
                top = rng.uniform(0.75, 1.0)
                pr[name] = {
                    "recall": recall,
                    "precision": [round(top - (top - 0.15) * r ** rng.uniform(1.5, 3), 4) for r in recall],
                }
            centres = [(i + 0.5) / 10 for i in range(10)]
            calibration = {
                "edges": [i / 10 for i in range(11)],
                "count": [100] * 10,
                "mean_confidence": centres,
                "fraction_positive": [max(0.0, min(1.0, c + rng.uniform(-0.08, 0.05))) for c in centres],
                "ece": 0.04,
            }
            evaluation.micro_f1 = sum(f1s) / len(f1s) + 0.05
            evaluation.macro_f1 = sum(f1s) / len(f1s)
            evaluation.samples_f1 = evaluation.micro_f1 - 0.01
            evaluation.roc_auc_macro = 0.9
            evaluation.metrics = {"hamming_accuracy": 0.93, "ece": 0.04, "synthetic": True}
            evaluation.curves = {"pr_curves": pr, "calibration": calibration}
            evaluation.save()
        self.stdout.write(f"created synthetic model version {version.pk}")
        return version

    def _predictions(self, rng, genres, version, movies, label_sets):
        # The derived fields (suggestions, disagreement, uncertainty) come from the one
        # function batch inference uses, so synthetic predictions behave like real ones.
        names = [g.name for g in genres]
        thresholds = np.asarray(version.thresholds, dtype=np.float64)
        rows = []
        for movie, chosen in zip(movies, label_sets, strict=False):
            labelled = [names[g] for g in chosen]
            # Mostly right: labelled genres score high, others low, with overlap.
            probs = np.array(
                [min(0.999, max(0.001, rng.gauss(0.72 if name in labelled else 0.12, 0.17))) for name in names]
            )
            decisions = probs >= thresholds
            if not decisions.any():
                decisions[int(probs.argmax())] = True  # every movie gets at least its top genre
            rows.append(
                Prediction(
                    movie=movie,
                    model_version=version,
                    **prediction_fields(names, thresholds, probs, decisions, labelled),
                )
            )
        Prediction.objects.bulk_create(rows, batch_size=5000)

    # --- a synthetic label audit (latency only) ----------------------------------------------

    AUDIT_THRESHOLD = 0.4
    PLANTED_SHARE = 0.05

    def _audit_run(self, genres) -> AuditRun:
        return AuditRun.objects.create(
            config_name="synthetic",
            config={"synthetic": True},
            status=AuditRun.Status.RUNNING,
            genres=[g.name for g in genres],
            thresholds=[self.AUDIT_THRESHOLD] * len(genres),
            counts={"movies": 0, "flagged": 0, "queued": 0},
        )

    def _audit_rows(self, rng, genres, movies, label_sets):
        # Scores like the synthetic predictions' (labelled genres high, others low); about 5 % of
        # the movies get one planted issue: a labelled genre scored near 0 ("wrong") or an
        # unlabelled one near 1 ("missing"). Margins and expected errors come from the engine.
        k = len(genres)
        y = np.zeros((len(movies), k), dtype=bool)
        for i, chosen in enumerate(label_sets):
            y[i, chosen] = True
        probs = np.clip(np.where(y, 0.72, 0.12) + self.vectors.normal(0, 0.17, y.shape), 0.001, 0.999)
        for i, chosen in enumerate(label_sets):
            if rng.random() < self.PLANTED_SHARE:
                if rng.random() < 0.5 and len(chosen) > 1:
                    probs[i, rng.choice(chosen)] = 0.02
                else:
                    probs[i, rng.choice([g for g in range(k) if g not in chosen])] = 0.97
        thresholds = np.full(k, self.AUDIT_THRESHOLD)
        margin = issue_margin(y, probs, thresholds)
        uncertainty = expected_errors(probs, thresholds)
        disagrees = (probs >= thresholds[None, :]) != y
        scores, issues = [], []
        for i, movie in enumerate(movies):
            scores.append(
                AuditScore(
                    audit=self.audit,
                    movie=movie,
                    scores={g.name: round(float(p), 5) for g, p in zip(genres, probs[i], strict=True)},
                    uncertainty=float(uncertainty[i]),
                )
            )
            for j in np.flatnonzero(disagrees[i]):
                queued = bool(margin[i, j] >= QUEUE_MIN_MARGIN)
                issues.append(
                    LabelIssue(
                        audit=self.audit,
                        movie=movie,
                        genre=genres[j],
                        kind=LabelIssue.Kind.WRONG if y[i, j] else LabelIssue.Kind.MISSING,
                        flagged=queued,
                        queued=queued,
                        quality=float(1 - probs[i, j] if not y[i, j] else probs[i, j]),
                        margin=float(margin[i, j]),
                        probability=float(probs[i, j]),
                        threshold=self.AUDIT_THRESHOLD,
                    )
                )
        AuditScore.objects.bulk_create(scores, batch_size=5000)
        LabelIssue.objects.bulk_create(issues, batch_size=5000)
        counts = self.audit.counts
        counts["movies"] += len(movies)
        counts["labeled"] = counts.get("labeled", 0) + len(movies)
        counts["queued_movies"] = counts.get("queued_movies", 0) + len({x.movie_id for x in issues if x.queued})
        counts["flagged"] += sum(x.flagged for x in issues)
        counts["queued"] += sum(x.queued for x in issues)

    def _finish_audit(self, started: float) -> None:
        self.audit.status = AuditRun.Status.SUCCEEDED
        self.audit.finished_at = timezone.now()
        self.audit.duration_s = time.monotonic() - started
        self.audit.save()
        self.stdout.write(f"wrote synthetic label audit {self.audit.pk}: {self.audit.counts['queued']:,} queued issues")

    def _promote(self, version):
        promote(version.pk)
        self.stdout.write(f"promoted {version} to production")
