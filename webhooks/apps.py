from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from base.events import event_raised
        from workers.sweep import register_sweep

        from . import delivery

        event_raised.connect(delivery.on_event, dispatch_uid="webhooks.on_event")
        # Deliveries whose message was lost (broker down at enqueue, worker killed) go out
        # again from the workers' periodic stale sweep.
        register_sweep("webhook deliveries", delivery.send_due)
        register_sweep("webhook delivery retention", delivery.prune_finished)
