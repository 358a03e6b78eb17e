from django.urls import path

from .views import predict, reports, review

app_name = "ml"
urlpatterns = [
    path("", reports.model_list, name="models"),
    path("compare/", reports.model_compare, name="compare"),
    path("<int:pk>/", reports.model_detail, name="model"),
    path("<int:pk>/promote/", reports.promote_view, name="promote"),
    path("<int:pk>/plots/<str:kind>.png", reports.plot_png, name="plot"),
    path("review/progress/", review.review_progress_page, name="review_progress"),
    path("review/<str:queue>/", review.review_list, name="review"),
    path("review/<str:queue>/<int:position>/", review.ReviewItemView.as_view(), name="review_item"),
    path("review/<str:queue>/movies/<int:pk>/act/", review.review_act, name="review_act"),
    path("predict/", predict.predict_page, name="predict"),
]
