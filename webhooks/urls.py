from django.urls import path

from . import views

app_name = "webhooks"
urlpatterns = [
    path("", views.endpoint_list, name="endpoints"),
    path("<int:pk>/", views.endpoint_detail, name="endpoint"),
    path("<int:pk>/rotate-secret/", views.rotate_secret, name="rotate"),
    path("<int:pk>/ping/", views.ping, name="ping"),
    path("<int:pk>/delete/", views.delete_endpoint, name="delete"),
    path("deliveries/<int:pk>/redeliver/", views.redeliver, name="redeliver"),
]
