"""Network access levels, the default allowed domains and wildcard matching. Pure: no I/O.

A policy says what a sandbox may reach outside the appliance:

* ``none``    nothing outside the appliance;
* ``limited`` the default allowed domains below (the reference page's list);
* ``custom``  the environment's own list, optionally plus the defaults;
* ``full``    any host, including bare IP addresses (private ranges stay blocked elsewhere).

Patterns are host names (``pypi.org``) or wildcards (``*.gcr.io``). A wildcard matches any name
with at least one more label in front of its base (``a.gcr.io``, ``a.b.gcr.io``) and never the
base itself nor a name that merely contains it (``gcr.io.evil.net``). Matching is on whole,
normalised names: lower case, no trailing dot, IDNA (punycode) for non-ASCII.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import re
from collections.abc import Iterable

from appliance_base.errors import ApplianceError

NONE = "none"
LIMITED = "limited"
CUSTOM = "custom"
FULL = "full"
LEVELS = (NONE, LIMITED, CUSTOM, FULL)
DEFAULT_LEVEL = LIMITED

HTTP_METHODS = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "TRACE")

# The ports HTTP(S) runs on: the only ones the proxy intercepts and the nft redirect covers. They
# are the default allowed ports below `full`, and the only ones where methods are restricted (a
# method restriction can only be enforced on HTTP the proxy reads).
HTTP_PORTS: tuple[int, ...] = (80, 443)
_LEVEL_DEFAULT = object()  # Policy.make(ports=...) not given: the level's default

# The reference page's "default allowed domains" (section 网络访问和安全 / 默认允许的域), in its order.
DEFAULT_DOMAINS: tuple[str, ...] = (
    # Anthropic services
    "api.anthropic.com",
    "statsig.anthropic.com",
    "platform.claude.com",
    "code.claude.com",
    "claude.ai",
    # Version control
    "github.com",
    "www.github.com",
    "api.github.com",
    "npm.pkg.github.com",
    "raw.githubusercontent.com",
    "pkg-npm.githubusercontent.com",
    "objects.githubusercontent.com",
    "codeload.github.com",
    "avatars.githubusercontent.com",
    "camo.githubusercontent.com",
    "gist.github.com",
    "gitlab.com",
    "www.gitlab.com",
    "registry.gitlab.com",
    "bitbucket.org",
    "www.bitbucket.org",
    "api.bitbucket.org",
    # Container registries
    "registry-1.docker.io",
    "auth.docker.io",
    "index.docker.io",
    "hub.docker.com",
    "www.docker.com",
    "production.cloudflare.docker.com",
    "download.docker.com",
    "gcr.io",
    "*.gcr.io",
    "ghcr.io",
    "mcr.microsoft.com",
    "*.data.mcr.microsoft.com",
    "public.ecr.aws",
    # Cloud platforms
    "cloud.google.com",
    "accounts.google.com",
    "gcloud.google.com",
    "*.googleapis.com",
    "storage.googleapis.com",
    "compute.googleapis.com",
    "container.googleapis.com",
    "azure.com",
    "portal.azure.com",
    "microsoft.com",
    "www.microsoft.com",
    "*.microsoftonline.com",
    "packages.microsoft.com",
    "dotnet.microsoft.com",
    "dot.net",
    "visualstudio.com",
    "dev.azure.com",
    "*.amazonaws.com",
    "*.api.aws",
    "oracle.com",
    "www.oracle.com",
    "java.com",
    "www.java.com",
    "java.net",
    "www.java.net",
    "download.oracle.com",
    "yum.oracle.com",
    # Package managers - JavaScript/Node
    "registry.npmjs.org",
    "www.npmjs.com",
    "www.npmjs.org",
    "npmjs.com",
    "npmjs.org",
    "yarnpkg.com",
    "registry.yarnpkg.com",
    # Package managers - Python
    "pypi.org",
    "www.pypi.org",
    "files.pythonhosted.org",
    "pythonhosted.org",
    "test.pypi.org",
    "pypi.python.org",
    "pypa.io",
    "www.pypa.io",
    # Package managers - Ruby
    "rubygems.org",
    "www.rubygems.org",
    "api.rubygems.org",
    "index.rubygems.org",
    "ruby-lang.org",
    "www.ruby-lang.org",
    "rubyforge.org",
    "www.rubyforge.org",
    "rubyonrails.org",
    "www.rubyonrails.org",
    "rvm.io",
    "get.rvm.io",
    # Package managers - Rust
    "crates.io",
    "www.crates.io",
    "index.crates.io",
    "static.crates.io",
    "rustup.rs",
    "static.rust-lang.org",
    "www.rust-lang.org",
    # Package managers - Go
    "proxy.golang.org",
    "sum.golang.org",
    "index.golang.org",
    "golang.org",
    "www.golang.org",
    "goproxy.io",
    "pkg.go.dev",
    # Package managers - JVM
    "maven.org",
    "repo.maven.org",
    "central.maven.org",
    "repo1.maven.org",
    "jcenter.bintray.com",
    "gradle.org",
    "www.gradle.org",
    "services.gradle.org",
    "plugins.gradle.org",
    "kotlin.org",
    "www.kotlin.org",
    "spring.io",
    "repo.spring.io",
    # Package managers - other languages
    "packagist.org",
    "www.packagist.org",
    "repo.packagist.org",
    "nuget.org",
    "www.nuget.org",
    "api.nuget.org",
    "pub.dev",
    "api.pub.dev",
    "hex.pm",
    "www.hex.pm",
    "cpan.org",
    "www.cpan.org",
    "metacpan.org",
    "www.metacpan.org",
    "api.metacpan.org",
    "cocoapods.org",
    "www.cocoapods.org",
    "cdn.cocoapods.org",
    "haskell.org",
    "www.haskell.org",
    "hackage.haskell.org",
    "swift.org",
    "www.swift.org",
    # Linux distributions
    "archive.ubuntu.com",
    "security.ubuntu.com",
    "ubuntu.com",
    "www.ubuntu.com",
    "*.ubuntu.com",
    "ppa.launchpad.net",
    "launchpad.net",
    "www.launchpad.net",
    # Development tools and platforms
    "dl.k8s.io",
    "pkgs.k8s.io",
    "k8s.io",
    "www.k8s.io",
    "releases.hashicorp.com",
    "apt.releases.hashicorp.com",
    "rpm.releases.hashicorp.com",
    "archive.releases.hashicorp.com",
    "hashicorp.com",
    "www.hashicorp.com",
    "repo.anaconda.com",
    "conda.anaconda.org",
    "anaconda.org",
    "www.anaconda.com",
    "anaconda.com",
    "continuum.io",
    "apache.org",
    "www.apache.org",
    "archive.apache.org",
    "downloads.apache.org",
    "eclipse.org",
    "www.eclipse.org",
    "download.eclipse.org",
    "nodejs.org",
    "www.nodejs.org",
    # Cloud services and monitoring
    "statsig.com",
    "www.statsig.com",
    "api.statsig.com",
    "sentry.io",
    "*.sentry.io",
    "http-intake.logs.datadoghq.com",
    "*.datadoghq.com",
    "*.datadoghq.eu",
    # Content delivery and mirrors
    "sourceforge.net",
    "*.sourceforge.net",
    "packagecloud.io",
    "*.packagecloud.io",
    # Schemas and configuration
    "json-schema.org",
    "www.json-schema.org",
    "json.schemastore.org",
    "www.schemastore.org",
    # Model Context Protocol
    "*.modelcontextprotocol.io",
)

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


class PolicyError(ApplianceError):
    """A network policy (level, domain pattern or method list) is not valid."""


def normalize_host(host: str) -> str:
    """The comparable form of a host name: lower case, no trailing dot, IDNA-encoded.

    Raises PolicyError for something that cannot be a host name. IP literals are returned in
    their canonical text form (IPv6 without brackets).
    """
    h = (host or "").strip()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    ip = ip_literal(h)
    if ip is not None:
        return str(ip)
    h = h.rstrip(".") if h.endswith(".") and not h.endswith("..") else h
    try:
        h = h.encode("idna").decode("ascii") if not h.isascii() else h
    except UnicodeError as e:
        raise PolicyError(f"not a valid host name: {host!r}") from e
    h = h.lower()
    labels = h.split(".")
    if not h or len(h) > 253 or not all(_LABEL.match(label) for label in labels):
        raise PolicyError(f"not a valid host name: {host!r}")
    return h


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address if `host` is a bare IPv4/IPv6 literal, else None."""
    h = host.strip()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    try:
        return ipaddress.ip_address(h.split("%", 1)[0])
    except ValueError:
        return None


def validate_pattern(pattern: str) -> str:
    """Check one allowlist entry and return its normalised form.

    Accepted: a host name (``example.com``) or ``*.`` followed by a host name of at least two
    labels (``*.example.com``). Refused: IP addresses, ``*`` alone, ``*.com``, a ``*`` anywhere
    else, URLs, ports, empty strings.
    """
    p = (pattern or "").strip()
    if not p:
        raise PolicyError("empty domain pattern")
    if any(c in p for c in "/:@ ?#"):
        raise PolicyError(
            f"domain pattern {pattern!r} must be a host name, not a URL or host:port",
            hint="write e.g. example.com or *.example.com",
        )
    if ip_literal(p) is not None:
        raise PolicyError(
            f"domain pattern {pattern!r} is an IP address",
            hint="allowlists name domains; use the 'full' level for access by address",
        )
    wildcard = p.startswith("*.")
    base = p[2:] if wildcard else p
    if "*" in base:
        raise PolicyError(
            f"domain pattern {pattern!r}: '*' is only allowed as the whole first label ('*.example.com')"
        )
    try:
        base = normalize_host(base)
    except PolicyError as e:
        raise PolicyError(f"domain pattern {pattern!r} is not a valid host name") from e
    if wildcard and base.count(".") < 1:
        raise PolicyError(
            f"domain pattern {pattern!r} would match a whole top-level domain",
            hint="name at least two labels after '*.', e.g. *.example.com",
        )
    return "*." + base if wildcard else base


def matches(pattern: str, host: str) -> bool:
    """Does one (already validated) pattern match one host name? Pure string logic."""
    try:
        h = normalize_host(host)
    except PolicyError:
        return False
    if pattern.startswith("*."):
        base = pattern[2:]
        return h.endswith("." + base) and len(h) > len(base) + 1
    return h == pattern


class Allowlist:
    """A compiled set of patterns: exact names in a set, wildcard bases in another."""

    def __init__(self, patterns: Iterable[str]):
        self.patterns: tuple[str, ...] = tuple(dict.fromkeys(validate_pattern(p) for p in patterns))
        self._exact = {p for p in self.patterns if not p.startswith("*.")}
        self._wild = {p[2:] for p in self.patterns if p.startswith("*.")}

    def match(self, host: str) -> str | None:
        """The pattern that allows `host`, or None. IP literals never match."""
        try:
            h = normalize_host(host)
        except PolicyError:
            return None
        if ip_literal(h) is not None:
            return None
        if h in self._exact:
            return h
        labels = h.split(".")
        for i in range(1, len(labels) - 1):
            suffix = ".".join(labels[i:])
            if suffix in self._wild:
                return "*." + suffix
        return None

    def __contains__(self, host: str) -> bool:
        return self.match(host) is not None

    def __len__(self) -> int:
        return len(self.patterns)


DEFAULT_ALLOWLIST = Allowlist(DEFAULT_DOMAINS)


@dataclasses.dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


def parse_ports(text: str | Iterable[int] | None) -> tuple[int, ...] | None:
    """``"80, 443"`` -> (80, 443); empty, None or ``any`` -> None (every port)."""
    if text is None:
        return None
    if isinstance(text, str):
        if text.strip().lower() in ("", "any", "*"):
            return None
        items: list = text.replace(",", " ").split()
    else:
        items = list(text)
    try:
        ports = tuple(sorted({int(p) for p in items}))
    except (TypeError, ValueError) as e:
        raise PolicyError(f"not a list of ports: {text!r}", hint="write e.g. 80,443 (or 'any')") from e
    if any(not 0 < p < 65536 for p in ports):
        raise PolicyError(f"port out of range in {text!r}", hint="ports are 1 to 65535")
    return ports or None


def parse_methods(text: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """``"GET, HEAD"`` -> ("GET", "HEAD"); empty or None -> None (every method allowed)."""
    if text is None:
        return None
    items = text.split(",") if isinstance(text, str) else list(text)
    methods = tuple(dict.fromkeys(m.strip().upper() for m in items if m.strip()))
    for m in methods:
        if not re.fullmatch(r"[A-Z]+", m):
            raise PolicyError(f"not an HTTP method: {m!r}", hint=f"use e.g. {', '.join(HTTP_METHODS[:3])}")
    return methods or None


@dataclasses.dataclass(frozen=True)
class Policy:
    """What one environment allows. Build with Policy.make() to validate."""

    level: str = DEFAULT_LEVEL
    domains: tuple[str, ...] = ()  # custom patterns (level custom)
    include_defaults: bool = False  # custom: also the default list
    methods: tuple[str, ...] | None = None  # None: every HTTP method
    # The model API the session's agent talks to (its key injected by the proxy): reachable at
    # every level, with every method, or the agent could not work at `none` (or at `limited` for
    # an API off the default list, like Codex's api.openai.com).
    agent_hosts: tuple[str, ...] = ()
    # Destination ports the proxy lets a guest reach (CONNECT and absolute-form requests); None:
    # every port (level full's default). Below full the default is HTTP_PORTS; the appliance's
    # per-level settings (egress_ports_<level>) replace it when the sandbox is attached.
    ports: tuple[int, ...] | None = HTTP_PORTS

    @classmethod
    def make(
        cls,
        level: str = DEFAULT_LEVEL,
        domains: Iterable[str] = (),
        include_defaults: bool = False,
        methods: str | Iterable[str] | None = None,
        agent_hosts: Iterable[str] = (),
        ports: str | Iterable[int] | None = _LEVEL_DEFAULT,  # type: ignore[assignment]
    ) -> Policy:
        if level not in LEVELS:
            raise PolicyError(
                f"unknown network access level {level!r}", hint=f"use one of: {', '.join(LEVELS)}"
            )
        doms = tuple(dict.fromkeys(validate_pattern(d) for d in domains))
        if doms and level != CUSTOM:
            raise PolicyError(
                f"a domain list only applies to the 'custom' level, not {level!r}",
                hint="set the level to custom, or drop the domain list",
            )
        agents = tuple(dict.fromkeys(normalize_host(h) for h in agent_hosts))
        for host in agents:
            if ip_literal(host) is not None:
                raise PolicyError(f"an agent host must be a name, not {host!r}")
        if ports is _LEVEL_DEFAULT:
            ports = None if level == FULL else HTTP_PORTS
        return cls(level, doms, bool(include_defaults) and level == CUSTOM, parse_methods(methods), agents,
                   parse_ports(ports))

    @functools.cached_property
    def allowlist(self) -> Allowlist | None:
        """None means: every host name (level full)."""
        if self.level == FULL:
            return None
        if self.level == NONE:
            return Allowlist(())
        if self.level == LIMITED:
            return DEFAULT_ALLOWLIST
        return Allowlist(self.domains + (DEFAULT_DOMAINS if self.include_defaults else ()))

    @property
    def describe(self) -> str:
        if self.level == CUSTOM:
            return "custom" + (" + defaults" if self.include_defaults else "")
        return self.level

    def check_host(self, host: str) -> Decision:
        """May a connection to `host` (name or IP literal) be made? Says why, either way."""
        if ip_literal(host) is not None:
            if self.level == FULL:
                return Decision(True, f"level full allows bare address {host}")
            return Decision(False, f"bare IP address {host} is refused unless the level is full")
        try:
            h = normalize_host(host)
        except PolicyError:
            return Decision(False, f"{host!r} is not a valid host name")
        if self.is_agent_host(h):
            return Decision(True, f"{h} is the model API of the session's agent")
        if self.level == FULL:
            return Decision(True, "level full allows every host")
        if self.level == NONE:
            return Decision(False, "level none allows nothing outside the appliance")
        pattern = self.allowlist.match(h)  # type: ignore[union-attr]
        if pattern is None:
            return Decision(False, f"{h} is not on the {self.describe} allowlist")
        return Decision(True, f"{h} matches {pattern!r} on the {self.describe} allowlist")

    def is_agent_host(self, host: str) -> bool:
        try:
            return normalize_host(host) in self.agent_hosts
        except PolicyError:
            return False

    @property
    def allowed_ports(self) -> tuple[int, ...] | None:
        """The ports a guest may reach through the proxy (None: every port). Under a method
        restriction only HTTP(S) ports: anything else would be a byte stream no method check sees."""
        if self.methods is None:
            return self.ports
        return tuple(p for p in (self.ports or HTTP_PORTS) if p in HTTP_PORTS)

    def check_port(self, port: int, host: str = "") -> Decision:
        allowed = self.allowed_ports
        if allowed is None or port in allowed:
            return Decision(True, "port allowed")
        if host and self.is_agent_host(host):  # a configured base URL may name its own port
            return Decision(True, "the agent's model API is reachable on any port")
        why = " (HTTP methods are restricted: only HTTP and HTTPS pass)" if self.methods is not None else ""
        return Decision(False, f"port {port} is not allowed at level {self.describe}"
                               f" (allowed ports: {', '.join(map(str, allowed)) or 'none'}){why}")

    def check_method(self, method: str, host: str = "") -> Decision:
        if self.methods is None or method.upper() in self.methods:
            return Decision(True, "method allowed")
        if host and self.is_agent_host(host):  # the agent's API is POST
            return Decision(True, "every method is allowed to the agent's model API")
        return Decision(False, f"method {method.upper()} is not allowed (allowed: {', '.join(self.methods)})")

    def to_dict(self) -> dict:
        return {
            "level": self.level,
            "domains": list(self.domains),
            "include_defaults": self.include_defaults,
            "methods": list(self.methods) if self.methods is not None else None,
            "agent_hosts": list(self.agent_hosts),
            "ports": list(self.ports) if self.ports is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Policy:
        return cls.make(
            data.get("level", DEFAULT_LEVEL),
            data.get("domains") or (),
            bool(data.get("include_defaults")),
            data.get("methods"),
            data.get("agent_hosts") or (),
            data.get("ports", _LEVEL_DEFAULT),
        )
