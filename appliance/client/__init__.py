"""The engineer's side of the appliance: a thin REST client, the stored login, git helpers for the
local checkout, and teleport. Nothing here touches the server's database: everything goes through
the REST API with the stored bearer token."""

from . import trust
from .api import Client
from .store import Login, load_login, save_login

__all__ = ["Client", "Login", "load_login", "save_login", "trust"]
