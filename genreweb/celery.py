"""The Celery app. Broker and queues come from Django settings (CELERY_* names).

Two queues: `default` (imports, preprocessing, snapshots, bookkeeping) and `gpu` (training,
evaluation, batch-inference shards). A CPU-only machine runs
`celery -A genreweb worker -Q default,gpu` so nothing waits for a GPU that is not there;
a GPU machine runs one `-Q gpu --concurrency 1 --pool solo` worker per GPU.
"""
import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "genreweb.settings")

app = Celery("genreweb")
app.config_from_object("django.conf:settings", namespace="CELERY")

DEFAULT_QUEUE = "default"
GPU_QUEUE = "gpu"
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
app.conf.task_queues = (Queue(DEFAULT_QUEUE), Queue(GPU_QUEUE))
app.conf.task_routes = TASK_ROUTES
app.autodiscover_tasks()
