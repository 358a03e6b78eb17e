"""Outgoing webhooks: staff register endpoints for domain events (base.events); each event
becomes one signed Delivery per subscribed endpoint, sent by a Celery task with bounded
retries. Sits between genreweb and workers: it may use every app below, none uses it."""
