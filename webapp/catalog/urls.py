from django.urls import path

from webapp.catalog import views

app_name = "catalog"

urlpatterns = [
    path("models/", views.model_list, name="model_list"),
    path("models/upload/", views.model_upload, name="model_upload"),
    path("models/<int:pk>/", views.model_detail, name="model_detail"),
    path("datasets/upload/", views.dataset_upload, name="dataset_upload"),
]
