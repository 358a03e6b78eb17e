"""Queue names and which task runs on which queue (the workers app owns them; the Celery app
in genreweb/celery.py reads them). Plain data: importing this loads no Django model."""

DEFAULT_QUEUE = "default"
GPU_QUEUE = "gpu"
QUEUES = (DEFAULT_QUEUE, GPU_QUEUE)

TASK_ROUTES = {
    "workers.ping": {"queue": DEFAULT_QUEUE},
    "workers.run_import": {"queue": DEFAULT_QUEUE},
    "workers.run_preprocess": {"queue": DEFAULT_QUEUE},
    "workers.run_snapshot": {"queue": DEFAULT_QUEUE},
    "workers.start_batch_predict": {"queue": DEFAULT_QUEUE},
    "workers.run_train": {"queue": GPU_QUEUE},
    "workers.run_evaluate": {"queue": GPU_QUEUE},
    "workers.run_retrain": {"queue": GPU_QUEUE},
    "workers.predict_shard": {"queue": GPU_QUEUE},
}
