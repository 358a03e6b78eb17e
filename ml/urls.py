from django.urls import path

from . import views

app_name = "ml"
urlpatterns = [
    path("", views.model_list, name="models"),
    path("compare/", views.model_compare, name="compare"),
    path("<int:pk>/", views.model_detail, name="model"),
    path("<int:pk>/promote/", views.promote_view, name="promote"),
    path("<int:pk>/plots/<str:kind>.png", views.plot_png, name="plot"),
    path("review/<str:queue>/", views.review_list, name="review"),
    path("review/<str:queue>/<int:position>/", views.ReviewItemView.as_view(), name="review_item"),
    path("suggestions/<int:pk>/accept/", views.accept_suggestion, name="accept"),
    path("predict/", views.predict_page, name="predict"),
]
