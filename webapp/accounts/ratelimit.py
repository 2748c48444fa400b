"""Failed sign-in attempts are counted per username and client address, and a burst locks that pair out.

``INFEROPT_LOGIN_MAX_FAILURES`` failures within ``INFEROPT_LOGIN_WINDOW_S`` seconds
(counted from the first failure) lock the (username, address) pair until the window
ends. While locked:

* ``RateLimitedModelBackend`` refuses to authenticate that pair at all, even with
  the right password, on every login path that calls ``authenticate()`` (the login
  page, the admin login), so guessing cannot go on behind the lockout;
* ``RateLimitedLoginView`` answers ``429 Too Many Requests`` with a form error that
  says when to try again, without checking the password.

A successful sign-in clears the pair's count. Counts live in Django's default
cache: shared by every process when that cache is Redis or Memcached, per process
with the default local-memory cache. The address is ``REMOTE_ADDR``; behind a
reverse proxy, configure the proxy to set it (headers such as X-Forwarded-For
are client-controlled and not trusted here).
"""

from __future__ import annotations

import hashlib
import math
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.contrib.auth.views import LoginView
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver


def _limits() -> tuple[int, int]:
    return settings.INFEROPT_LOGIN_MAX_FAILURES, settings.INFEROPT_LOGIN_WINDOW_S


def _key(username: str, request) -> str:
    address = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    # Hashed: usernames are user input and cache keys have a restricted alphabet and length.
    digest = hashlib.sha256(f"{username.strip().casefold()}\0{address}".encode()).hexdigest()
    return f"inferopt:login-failures:{digest}"


def _username(credentials: dict) -> str:
    value = credentials.get(get_user_model().USERNAME_FIELD, credentials.get("username"))
    return value if isinstance(value, str) else ""


def seconds_locked(username: str, request) -> int:
    """Seconds until ``username`` may try again from this request's address (0: not locked)."""
    limit, _ = _limits()
    state = cache.get(_key(username, request))
    if not state or state[0] < limit:
        return 0
    return max(1, math.ceil(state[1] - time.time()))


def record_failure(username: str, request) -> None:
    limit, window = _limits()
    key = _key(username, request)
    count, ends_at = cache.get(key) or (0, time.time() + window)
    # The window is fixed at the first failure: more failures do not extend a lockout.
    cache.set(key, (count + 1, ends_at), timeout=max(1, math.ceil(ends_at - time.time())))


def clear_failures(username: str, request) -> None:
    cache.delete(_key(username, request))


@receiver(user_login_failed, dispatch_uid="inferopt-login-failure-count")
def _count_failure(sender, credentials, request=None, **kwargs):
    record_failure(_username(credentials), request)


@receiver(user_logged_in, dispatch_uid="inferopt-login-success-reset")
def _reset_on_success(sender, request, user, **kwargs):
    if request is not None:
        clear_failures(user.get_username(), request)


class RateLimitedModelBackend(ModelBackend):
    """``ModelBackend`` that refuses a locked-out (username, address) pair before checking the password."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        name = username if username is not None else kwargs.get(get_user_model().USERNAME_FIELD)
        if isinstance(name, str) and seconds_locked(name, request):
            # PermissionDenied stops authenticate() trying other backends too.
            raise PermissionDenied("too many failed sign-in attempts")
        return super().authenticate(request, username=username, password=password, **kwargs)


def lockout_message(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return (
        "Too many failed sign-in attempts for this username from your address. "
        f"Try again in {minutes} minute{'s' if minutes != 1 else ''}."
    )


class RateLimitedLoginView(LoginView):
    """The login page: 429 with a form error while the (username, address) pair is locked out."""

    def post(self, request, *args, **kwargs):
        seconds = seconds_locked(request.POST.get("username", ""), request)
        if seconds:
            # The password is not looked at; a fresh form is shown with the reason.
            context = self.get_context_data(form=self.get_form_class()(request), lockout=lockout_message(seconds))
            response = self.render_to_response(context, status=429)
            response["Retry-After"] = str(seconds)
            return response
        return super().post(request, *args, **kwargs)
