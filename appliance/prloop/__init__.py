"""The loop around a session's pull request.

Forge events come in (`hooks`: signed webhooks of GitHub, GitLab and Gitea, each delivery once) or
are fetched (`poller`, for forges that cannot reach the appliance); `events` turns each forge's
payloads into a few plain facts; `apply` updates the session's PR state, and — when the session's
auto-fix is on — queues turns for failed checks and review comments (`autofix`), then replies on
the review thread once the turn's push landed (`replies`). Issues labelled for the appliance, or
an `@appliance <task>` comment, start sessions (`issues`).

This package sits on top of sessions and forges and is driven by the web app (webhooks) and the
daemon (poller job); neither sessions nor forges import it.
"""
