"""The migrations build exactly the tables and columns the live models expect."""

from appliance.accounts.models import ApiToken, Team, TeamMember, User
from appliance.accounts.signin import SigninEvent
from appliance.environments.models import Environment, EnvironmentCache
from appliance.gitproxy.tokens import GitToken
from appliance.guest_limits import GuestLimitOverride
from appliance.models import GuestTemplate, Sandbox
from appliance.prloop.models import ForgeDelivery, ForgeLogin, PrCheck, PrReviewComment
from appliance.repos.models import Repository
from appliance.sessions.models import Comment, DiffFile, Event, Session, Turn
from appliance.sessions.spend.models import Budget
from netpolicy.usage import ModelUsage

MODELS = [Sandbox, GuestTemplate, EnvironmentCache, User, Team, TeamMember, ApiToken, Repository, Environment, Session, Turn, Event, Comment, DiffFile,
          GitToken, GuestLimitOverride, SigninEvent, ModelUsage, Budget, ForgeDelivery, ForgeLogin, PrCheck,
          PrReviewComment]


def test_every_model_column_exists_after_migrating(db):
    for model in MODELS:
        table = model._meta.table_name
        have = {c.name for c in db.get_columns(table)}
        want = {f.column_name for f in model._meta.sorted_fields}
        assert want <= have, f"{table}: missing {sorted(want - have)}"
