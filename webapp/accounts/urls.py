from django.urls import path

from webapp.accounts import views

app_name = "accounts"

urlpatterns = [
    path("teams/", views.team_list, name="teams"),
    path("teams/<int:pk>/", views.team_detail, name="team"),
    path("teams/<int:pk>/members/", views.member_add, name="member_add"),
    path("teams/<int:pk>/members/<int:membership_id>/role/", views.member_role, name="member_role"),
    path("teams/<int:pk>/members/<int:membership_id>/remove/", views.member_remove, name="member_remove"),
    path("teams/<int:pk>/webhook/", views.webhook, name="webhook"),
    path("account/tokens/", views.token_list, name="tokens"),
    path("account/tokens/<int:pk>/revoke/", views.token_revoke, name="token_revoke"),
]
