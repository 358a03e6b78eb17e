import json

from django.core.management.base import BaseCommand, CommandError

from ml.models import DatasetSnapshot
from ml.services.training import TrainingFailed, train_model

from ._progress import ConsoleProgress


class Command(BaseCommand):
    help = "Train a model on a snapshot; --config is a preset name (see --list) or a JSON config."

    def add_arguments(self, parser):
        parser.add_argument("--snapshot", type=int, help="snapshot id (default: the newest)")
        from ml.engine.registry import RECOMMENDED_PRESET  # config dataclasses only, no torch

        parser.add_argument(
            "--config",
            default=RECOMMENDED_PRESET,
            help=f'preset name or JSON, e.g. \'{{"preset": "gru-text", "epochs": 5}}\' (default: the recommended '
            f"preset, {RECOMMENDED_PRESET})",
        )
        parser.add_argument("--list", action="store_true", help="list the presets and exit")
        parser.add_argument("--promote", action="store_true", help="promote the new version to production")

    def handle(self, *args, **opts):
        if opts["list"]:
            from ml.engine.registry import preset_list

            for preset in preset_list():
                mark = " (recommended)" if preset["recommended"] else ""
                self.stdout.write(f"{preset['name']:36s} {preset['notes']}{mark}")
            return
        config = opts["config"]
        if config.lstrip().startswith("{"):
            try:
                config = json.loads(config)
            except json.JSONDecodeError as exc:
                raise CommandError(f"--config is not valid JSON: {exc}") from exc
        snapshot_id = opts["snapshot"]
        if snapshot_id is None:
            latest = DatasetSnapshot.objects.order_by("-created_at", "-id").first()
            if latest is None:
                raise CommandError("no snapshot yet: run build_snapshot first")
            snapshot_id = latest.pk
        elif not DatasetSnapshot.objects.filter(pk=snapshot_id).exists():
            raise CommandError(f"snapshot {snapshot_id} does not exist")
        try:
            run = train_model(snapshot_id, config, progress=ConsoleProgress(self.stderr))
        except TrainingFailed as exc:
            raise CommandError(f"{exc}\n{exc.run.error}") from exc
        except (ValueError, KeyError) as exc:
            raise CommandError(str(exc)) from exc
        version = run.model_version
        self.stdout.write(f"training run {run.pk} {run.status} on {run.device} in {run.timings.get('total_s')} s")
        for evaluation in version.evaluations.order_by("split"):
            self.stdout.write(
                f"  {evaluation.split}: micro-F1 {evaluation.micro_f1:.4f}  macro-F1 {evaluation.macro_f1:.4f}  "
                f"samples-F1 {evaluation.samples_f1:.4f}  ROC AUC {evaluation.roc_auc_macro or float('nan'):.4f}"
            )
        self.stdout.write(f"model version {version.pk} ({version.artifact_path})")
        if opts["promote"]:
            from ml.services.registry import promote

            promote(version.pk)
            self.stdout.write(f"model version {version.pk} promoted to production")
