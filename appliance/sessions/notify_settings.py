"""Where a user hears that a turn ended, as they set it (API `PATCH /me`, the console's account
page): a webhook URL (public addresses only), one e-mail address, and whether the console shows a
browser notification. Every field is checked before any is written."""

from __future__ import annotations

from ..accounts.models import User
from ..errors import Invalid
from . import notify, webhook

FIELDS = ("webhook_url", "email", "notify_browser")


def save(user: User, data: dict, allowed_networks: str = "") -> User:
    """Write the fields of `data` that are present; Invalid (naming the field) for a bad one."""
    fields = {}
    if "webhook_url" in data:
        url = str(data["webhook_url"] or "").strip()
        if url:  # only public addresses (loopback, private, link-local, the host itself are refused)
            webhook.check_url(url, allowed_networks)
        fields["webhook_url"] = url
    if "email" in data:
        email = str(data["email"] or "").strip()
        if email and not notify.is_one_address(email):
            raise Invalid(f"'email': {email!r} is not exactly one e-mail address",
                          hint="write one address, e.g. alice@example.com")
        fields["email"] = email
    if "notify_browser" in data:
        fields["notify_browser"] = bool(data["notify_browser"])
    if fields:
        User.update(**fields).where(User.id == user.id).execute()
    return User.get_by_id(user.id)
