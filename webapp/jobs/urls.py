from django.urls import path

from webapp.jobs import views

app_name = "jobs"

urlpatterns = [
    path("jobs/", views.job_list, name="list"),
    path("jobs/new/", views.job_new, name="new"),
    path("jobs/new/search/", views.job_new_search, name="new_search"),
    path("jobs/new/serving/", views.job_new_serving, name="new_serving"),
    path("jobs/<int:pk>/", views.job_detail, name="detail"),
    path("jobs/<int:pk>/status/", views.job_status, name="status"),
    path("jobs/<int:pk>/cancel/", views.job_cancel, name="cancel"),
    path("jobs/<int:pk>/retry/", views.job_retry, name="retry"),
    path("jobs/<int:pk>/report.json", views.report_json, name="report_json"),
    path("jobs/<int:pk>/artifacts/<int:artifact_id>/download", views.artifact_download, name="artifact_download"),
]
