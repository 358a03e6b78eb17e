"""The Celery app. Broker and queues come from Django settings (CELERY_* names).

Two queues: `default` (imports, preprocessing, snapshots, bookkeeping) and `gpu` (training,
evaluation, batch-inference shards). A CPU-only machine runs
`celery -A genreweb worker -Q default,gpu` so nothing waits for a GPU that is not there;
a GPU machine runs one `-Q gpu --concurrency 1 --pool solo` worker per GPU.
"""

import os

from celery import Celery
from kombu import Queue

from workers.kinds import route_task
from workers.queues import QUEUES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "genreweb.settings")

app = Celery("genreweb")
app.config_from_object("django.conf:settings", namespace="CELERY")

app.conf.task_queues = tuple(Queue(name) for name in QUEUES)
# Each task goes to its kind's queue (workers.kinds), also for kinds registered later.
app.conf.task_routes = (route_task,)
app.autodiscover_tasks()
