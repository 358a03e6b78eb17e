from django.urls import path

app_name = "ml"
urlpatterns: list = []
