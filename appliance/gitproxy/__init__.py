"""The git proxy: guests clone and push through it; the real credential stays on the host.

    tokens.issue(session_id, repo_key, work_branch, ttl, sandbox_id=) -> token  (shown once; hash stored;
                                                                  valid only from that live sandbox)
    server.guest_remote(token, repo_key, host, port) -> (remote URL, credential-store line)
    MirrorStore.ensure(spec) / .refresh(spec)                           host-side mirrors
    GitProxy(mirrors, resolve_repo)                                     the WSGI app
    GitProxyService.from_config(cfg, resolve_repo).start()              serve it in a thread
    tokens.revoke(session_id)

Modules: `git` (the one wrapper around the git binary, and how the credential reaches upstream),
`repos` (RepoSpec), `mirror`, `tokens`, `pktline` (pure protocol parts), `server`, `service`.
"""

from .git import Credential, Git, GitError, UpstreamError
from .mirror import MirrorBusy, MirrorStore
from .repos import BadRepoSpec, RepoSpec
from .server import GitProxy, remote_url
from .service import GitProxyService
from .tokens import Grant

__all__ = [
    "BadRepoSpec", "Credential", "Git", "GitError", "GitProxy", "GitProxyService", "Grant", "MirrorBusy",
    "MirrorStore", "RepoSpec", "UpstreamError", "remote_url",
]
