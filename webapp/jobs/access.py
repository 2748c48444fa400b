"""Authentication for plain Django views that API clients also call (downloads)."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponse

from webapp.accounts.auth import bearer_key, user_for_key


def login_or_token_required(view):
    """Session login, or ``Authorization: Bearer <token>``; browsers go to the login page."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            key = bearer_key(request)
            if key is None:
                return redirect_to_login(request.get_full_path())
            user = user_for_key(key)
            if user is None:
                response = HttpResponse("invalid or revoked token\n", status=401, content_type="text/plain")
                response["WWW-Authenticate"] = 'Bearer realm="api"'
                return response
            request.user = user
        return view(request, *args, **kwargs)

    return wrapper
