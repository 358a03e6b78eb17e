"""Queue names (the workers app owns them; the kinds table says which kind runs where, and the
Celery app in genreweb/celery.py routes by it). Plain data: importing this loads no Django model."""

DEFAULT_QUEUE = "default"
GPU_QUEUE = "gpu"
QUEUES = (DEFAULT_QUEUE, GPU_QUEUE)
