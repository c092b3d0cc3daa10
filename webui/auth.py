"""Who is asking: API bearer tokens (and, with the console, signed-in users)."""

from __future__ import annotations

from flask import g, request

from appliance.accounts.models import ApiToken, User


def current_user() -> User | None:
    if "user" not in g:
        g.user = None
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            g.user = ApiToken.user_for(header[len("Bearer "):].strip())
    return g.user
