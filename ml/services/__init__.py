"""Django-side ML services: the functions management commands, Celery tasks and views call.

- snapshots.build_snapshot     freeze movies + labels + split into a DatasetSnapshot
- training.train_model         snapshot + config -> TrainingRun -> ModelVersion (+ evaluations)
- evaluation.evaluate_model    ModelVersion x snapshot split -> Evaluation + GenreMetric rows
- inference.predict_movies     bulk, idempotent Prediction upserts; predict_raw for ad-hoc input
- params                       the JSON parameter checks of the services above, for jobs
- registry.promote             move the "production" alias in one transaction

Long-running services take ``progress(message, fraction)`` (``base.progress``: the type,
``report`` and ``scaled`` for sub-steps); a callback that raises (e.g. to cancel a job)
leaves the data consistent: work is committed per batch or not at all.

Each service a job kind runs also owns the check of its JSON parameters
(``params.*_param_errors(params, errors)``, importing no torch), which workers' job kinds
table reuses.
"""
