from django.urls import path

from webapp.costs import views

app_name = "costs"

urlpatterns = [
    path("costs/instances/", views.instance_list, name="instance_list"),
    path("costs/instances/new/", views.instance_new, name="instance_new"),
    path("costs/instances/<int:pk>/edit/", views.instance_edit, name="instance_edit"),
    path("costs/instances/<int:pk>/delete/", views.instance_delete, name="instance_delete"),
    path("jobs/compare/", views.compare_view, name="compare"),
    path("jobs/<int:pk>/artifacts/<int:artifact_id>/card.md", views.card_markdown, name="card_md"),
    path("jobs/<int:pk>/artifacts/<int:artifact_id>/card.html", views.card_html, name="card_html"),
]
