from django.core.management.base import BaseCommand, CommandError

from ml.services.audit import DEFAULT_CONFIG, DEFAULT_FOLDS, audit_params, run_audit

from ._progress import ConsoleProgress


class Command(BaseCommand):
    help = "Audit every movie's labels out of fold (K-fold cross-fit + confident learning) and store the issues."

    def add_arguments(self, parser):
        parser.add_argument("--folds", type=int, default=DEFAULT_FOLDS)
        parser.add_argument("--config", default=DEFAULT_CONFIG, help="a frozen-encoder preset")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, **opts):
        try:
            params = audit_params({"config": opts["config"], "folds": opts["folds"], "seed": opts["seed"]})
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        run = run_audit(**params, progress=ConsoleProgress(self.stdout))
        c = run.counts
        self.stdout.write(
            f"audit {run.pk} ({run.config_name}, {run.folds} folds) in {run.duration_s:.1f}s: "
            f"{c['labeled']} labeled + {c['unlabeled']} unlabeled movies; {c['flagged']} label issues flagged, "
            f"{c['queued']} in the likely-label-errors queue on {c['queued_movies']} movies "
            f"({c['missing']} missing, {c['wrong']} wrong); {c['suggestions']} suggestions in all"
        )
