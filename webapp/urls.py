"""URL map: pages under /, the REST API under /api/v1/."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from webapp import views
from webapp.accounts.ratelimit import RateLimitedLoginView
from webapp.catalog import api as catalog_api
from webapp.jobs import api as jobs_api
from webapp.reviews import api as reviews_api

api_patterns = [
    path("jobs", jobs_api.JobListView.as_view(), name="jobs"),
    path("jobs/<int:pk>", jobs_api.JobDetailView.as_view(), name="job"),
    path("jobs/<int:pk>/cancel", jobs_api.JobCancelView.as_view(), name="job_cancel"),
    path("preflight", jobs_api.PreflightView.as_view(), name="preflight"),
    path("jobs/<int:pk>/reviews", reviews_api.JobReviewsView.as_view(), name="job_reviews"),
    path("jobs/<int:pk>/audit", reviews_api.JobAuditView.as_view(), name="job_audit"),
    path("models", catalog_api.ModelListView.as_view(), name="models"),
    path("models/<int:pk>", catalog_api.ModelDetailView.as_view(), name="model"),
    path("datasets", catalog_api.DatasetListView.as_view(), name="datasets"),
    path("passes", catalog_api.PassListView.as_view(), name="passes"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", views.api_docs, name="docs"),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/login/", RateLimitedLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("webapp.catalog.urls")),
    path("", include("webapp.jobs.urls")),
    path("", include("webapp.reviews.urls")),
    path("", include("webapp.accounts.urls")),
    path("", include("webapp.costs.urls")),
    path("", include("webapp.fleet.urls")),
    path("api/v1/", include((api_patterns, "api"))),
    path("admin/", admin.site.urls),
]

# Oversized or malformed requests (too many fields or files) as 400 pages / API JSON, not 500.
handler400 = "webapp.views.bad_request"
