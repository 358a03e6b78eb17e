from django.core.management.base import BaseCommand, CommandError

from ml.models import DatasetSnapshot, ModelVersion
from ml.services.evaluation import evaluate_model

from ._progress import ConsoleProgress


class Command(BaseCommand):
    help = "Evaluate a model version on a snapshot split and store per-genre metrics."

    def add_arguments(self, parser):
        parser.add_argument("--model-version", type=int, required=True)
        parser.add_argument("--snapshot", type=int, help="default: the snapshot the version was trained on")
        parser.add_argument("--split", default="test", choices=["train", "val", "test"])

    def handle(self, *args, **opts):
        if not ModelVersion.objects.filter(pk=opts["model_version"]).exists():
            raise CommandError(f"model version {opts['model_version']} does not exist")
        if opts["snapshot"] is not None and not DatasetSnapshot.objects.filter(pk=opts["snapshot"]).exists():
            raise CommandError(f"snapshot {opts['snapshot']} does not exist")
        try:
            evaluation = evaluate_model(
                opts["model_version"], opts["snapshot"], split=opts["split"], progress=ConsoleProgress(self.stderr)
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"{evaluation.split} ({evaluation.n_examples} movies): micro-F1 {evaluation.micro_f1:.4f}  "
            f"macro-F1 {evaluation.macro_f1:.4f}  samples-F1 {evaluation.samples_f1:.4f}  "
            f"ROC AUC {evaluation.roc_auc_macro or float('nan'):.4f}"
        )
        for row in evaluation.genre_metrics.order_by("-support"):
            self.stdout.write(
                f"  {row.genre:20s} F1 {row.f1:.3f}  P {row.precision:.3f}  R {row.recall:.3f}  support {row.support}"
            )
