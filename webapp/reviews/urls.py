from django.urls import path

from webapp.reviews import views

app_name = "reviews"

urlpatterns = [
    path("reviews/", views.queue, name="queue"),
    path("reviews/audit/", views.audit, name="audit"),
    path("jobs/<int:pk>/review/", views.review, name="review"),
]
