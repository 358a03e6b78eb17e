from django.urls import path

from . import views

app_name = "workers"
urlpatterns = [
    path("", views.job_list, name="jobs"),
    path("status.json", views.statuses_json, name="statuses"),
    path("<int:pk>/", views.job_detail, name="job"),
    path("<int:pk>/status.json", views.status_json, name="status"),
    path("<int:pk>/cancel/", views.cancel, name="cancel"),
    path("<int:pk>/retry/", views.retry, name="retry"),
]
