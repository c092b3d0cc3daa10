"""Configuration, layered: built-in defaults < TOML file < APPLIANCE_* environment variables.

The file is `/etc/appliance/appliance.toml`, or the path in `APPLIANCE_CONFIG`. Settings are grouped
in sections in the file (`[libvirt] accel = "tcg"`) but every setting has a unique flat name, which
is also its attribute on `Config` and, upper-cased behind `APPLIANCE_`, its environment variable
(`APPLIANCE_ACCEL=tcg`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
import tomllib
from pathlib import Path

from .errors import ConfigError
from .prices import parse_prices

DEFAULT_CONFIG_PATH = "/etc/appliance/appliance.toml"
# the unprivileged user sessions run as in the guest (images create it; see appliance/sandbox/guest.py)
DEFAULT_GUEST_USER = "agent"

# section -> {setting: default}. An empty-string default for a path means "derived" (see load()).
DEFAULTS: dict[str, dict[str, object]] = {
    "paths": {
        "state_dir": "/var/lib/appliance",
        "image_dir": "",  # default: <state_dir>/images
    },
    "database": {
        "database_url": "",  # default: sqlite:///<state_dir>/appliance.db
    },
    "libvirt": {
        "libvirt_uri": "qemu:///system",
        "accel": "auto",  # auto | kvm | tcg
        "accel_probe_timeout": 20.0,
    },
    "network": {
        "bridge": "appl0",
        "subnet": "10.213.0.0/24",
        "tap_prefix": "aplt",
    },
    "sandbox": {
        "default_profile": "general",
        "vcpus": 2,
        "memory_mb": 1024,
        "disk_gb": 16,
        "ready_timeout": 240.0,
        "guest_user": DEFAULT_GUEST_USER,
        "min_free_disk_mb": 1024,
        # the largest guest an environment (or `appliance sandbox create`) may ask for
        "max_vcpus": 8,
        "max_memory_mb": 16384,
        "max_disk_gb": 100,
        "guest_output_max_kb": 4096,  # of one command's output (each stream) the host keeps in memory: the tail
        # on: guests start from a saved template of their image (RAM on template_dir, a tmpfs) instead
        # of booting; off, or when templating fails on this host, they cold-boot (appliance doctor says why)
        "guest_templates": "off",
        "template_dir": "/dev/shm/appliance-templates",
        # warm pool: this many cloned guests of the default profile wait, paused, for a session to claim
        # one; "auto" sizes it from host memory (0 unless guest_templates is on); 0 disables it
        "warm_pool": "auto",
        # on: after an environment's setup script succeeds in a fresh guest, its disk is kept and the
        # next session of that environment starts from it (checkout and setup done, new commits fetched)
        "environment_cache": "on",
        "environment_cache_days": 7.0,  # a cache older than this is dropped (and one whose inputs changed at once)
    },
    "server": {
        "listen_host": "127.0.0.1",
        "listen_port": 8080,
        "reconcile_interval": 60.0,
        "log_format": "text",  # text | json (one JSON object per line: time, level, logger, message)
        "max_request_mb": 4,  # the largest request body the web API and console accept (413 above)
        "tls_cert": "",  # PEM certificate (chain) the console/API serve; empty: plain HTTP (scripts/install sets it)
        "tls_key": "",  # its PEM private key, mode 0600
        "http_redirect_port": 0,  # a plain-HTTP port that only redirects to HTTPS; 0: none
        "web_threads": 512,  # web server threads; every open websocket (events, terminal) holds one
    },
    "signin": {  # console password sign-in: lockouts are counted from the sign-in audit log
        "signin_window": 900.0,  # seconds over which failed sign-ins are counted
        "signin_max_failures": 5,  # failures for one account within the window before it is locked
        "signin_max_failures_per_address": 20,  # failures from one address (any accounts) before it is blocked
        "signin_lockout": 900.0,  # seconds a locked account / blocked address waits after its last failure
        "signin_audit_retention_days": 90.0,
    },
    "sessions": {
        "branch_prefix": "appliance",  # work branches are <prefix>/<slug>-<short id>
        "max_prompt_chars": 100000,
        "max_running_sessions": 0,  # 0: as many as free memory and vCPUs allow
        "max_running_per_user": 0,  # 0: no per-user limit
        "host_reserved_memory_mb": 2048,  # kept free for the host when admitting sessions
        "idle_guest_timeout": 1800.0,  # seconds an idle session keeps its guest
        "hook_failure": "continue",  # continue | stop: what a failing SessionStart hook does
        "turn_timeout": 3600.0,  # seconds one agent run may take
        "agent_line_max_kb": 4096,  # longest output line kept (the agent's JSON lines included); longer: cut, said so
        "max_events_per_turn": 20000,  # stored events of guest output per turn; beyond: a notice and the last 200
        "transcript_max_mb": 64,  # of the agent's transcript kept on the host: the newest part
        "public_url": "",  # how people reach the console, for links in notifications
        "smtp_host": "",  # empty: no e-mail notifications
        "smtp_port": 25,
        "smtp_from": "appliance@localhost",
        # networks webhooks may reach although they are not public (e.g. "10.20.0.0/16,fd12::/48");
        # loopback, link-local, private, platform and the host's own addresses are refused otherwise
        "webhook_allowed_networks": "",
        "claude_code_model": "",  # the model Claude Code asks for (--model); empty: the CLI's default
        "codex_model": "",  # the model Codex asks for (-m); empty: the CLI's default
        "allowed_models": "",  # models people may pick per session or environment, "a,b"; empty: no choice
        "archived_session_retention_days": 0.0,  # archived sessions are deleted after this many days; 0: kept
    },
    "forges": {  # the loop around pull requests: forge events in, PR state, auto-fix
        "forge_poll_interval": 300.0,  # seconds between polls of open pull requests; 0: events only
        "autofix_max_turns_per_hour": 3,  # auto-fix turns one pull request may queue per hour
        "forge_session_label": "appliance",  # an issue given this label starts a session
        "forge_webhook_max_kb": 1024,  # the largest webhook delivery accepted (413 above)
    },
    "egress": {
        "egress_table": "appliance",  # nftables table name (one inet and one bridge table)
        "proxy_port": 3128,  # explicit HTTP(S) proxy on the bridge address
        "transparent_proxy_port": 3129,  # where nft redirects sandboxes' TCP 80/443
        "git_proxy_port": 3130,  # reserved for the git proxy; sandboxes may reach it
        "egress_service_ports": "",  # more TCP ports on the bridge address sandboxes may reach: "8081,8082"
        "dns_port": 53,
        "dns_tcp_max_connections": 64,  # open TCP connections to the resolver, in total
        "dns_tcp_max_per_sandbox": 4,  # open TCP connections to the resolver per sandbox
        "dns_tcp_idle_timeout": 5.0,  # seconds for each whole query over TCP (and between queries)
        "dns_upstream": "",  # "IP[:PORT],..."; empty: the nameservers in /etc/resolv.conf
        "static_hosts": "",  # hosts-format file, or inline "IP NAME...; IP NAME..." (checked before upstream DNS)
        "credentials_file": "/etc/appliance/credentials.toml",  # host -> header -> value, mode 0600
        "upstream_ca_file": "",  # CA bundle the proxy trusts for intercepted upstreams; empty: system store
        "egress_blocked_networks": "",  # IPv4 networks never reachable, added to the built-in private list
        "egress_methods_limited": "",  # HTTP methods allowed at level limited, e.g. "GET,HEAD,OPTIONS"; empty: all
        "egress_methods_custom": "",
        "egress_methods_full": "",
        # Destination ports a sandbox may reach through the proxy, per level ("any": every port).
        # Level full reaches every port; where methods are restricted only 80 and 443 ever pass.
        "egress_ports_limited": "80,443",
        "egress_ports_custom": "80,443",
        "egress_request_rate": 0,  # proxied requests per minute per sandbox; 0: unlimited
        "egress_bandwidth_kbytes": 0,  # KiB/s per sandbox and direction; 0: unlimited
        "audit_retention_days": 30.0,
        "audit_max_rows": 1000000,
        "proxy_restart_delay": 1.0,  # seconds before the first restart of a dead proxy (doubles, max 30)
    },
    "spend": {  # model API usage, metered by the egress proxy from the API's answers (netpolicy/usage.py)
        "user_monthly_budget_usd": 0.0,  # each user's monthly budget unless an admin sets theirs; 0: none
        "team_monthly_budget_usd": 0.0,  # each team's (its members' usage together) unless set; 0: none
        # estimated prices, USD per million tokens: "MODEL_PREFIX=input,output,cache_read,cache_write; ...",
        # the longest matching prefix wins, "*" is every other model
        "model_prices": "claude-opus=15,75,1.5,18.75; claude-haiku=0.8,4,0.08,1; *=3,15,0.3,3.75",
    },
    "cluster": {  # more than one host: turns run as Procrastinate jobs on worker hosts (docs/ARCHITECTURE.md)
        "cluster_mode": "off",  # off: one process runs everything (SQLite or PostgreSQL) | on: needs PostgreSQL
        "host_id": "",  # this worker host's id; default: the machine's hostname
        "host_address": "",  # how control reaches this host (informational for now)
        "host_capacity": 2,  # turns this worker host runs at once
        "host_heartbeat_interval": 5.0,  # seconds between a worker's heartbeats (hosts table and Procrastinate)
        "host_stale_after": 30.0,  # seconds without a heartbeat before a host's turns are re-routed
        # the database URL control hands to a host joining with `appliance worker --join` (as reached from
        # the workers); default: database_url, which then must not say localhost
        "worker_database_url": "",
        # a worker host: how it reaches control (written by `appliance worker --join`), for images
        "control_url": "",
        "control_fingerprint": "",  # control's pinned certificate, as `appliance login --fingerprint`
        "control_ca": "",  # or a CA file control's certificate must chain to (`--ca`)
        "host_credential": "",  # what control issued this host at its join (a secret)
        # guests | dry-run: dry-run runs turns without guests (each turn only waits dry_run_turn_seconds);
        # the guest-less cluster test and `scripts/bench cluster` use it, never a real install
        "turn_runner": "guests",
        "dry_run_turn_seconds": 1.0,
    },
    "git": {  # the git proxy (it listens on egress.git_proxy_port at the bridge address)
        "git_mirror_refresh_interval": 10.0,  # seconds a mirror is served before it is fetched again
        "git_token_ttl": 604800.0,  # seconds a session's git token stays valid (revoked when it ends)
        "git_upstream_timeout": 600.0,  # seconds one fetch from / push to upstream may take
        "git_max_push_mb": 1024,  # largest pack a guest may push
    },
}

ACCEL_MODES = ("auto", "kvm", "tcg")
LOG_FORMATS = ("text", "json")


def _flat_defaults() -> dict[str, object]:
    flat: dict[str, object] = {}
    for settings in DEFAULTS.values():
        flat.update(settings)
    return flat


@dataclasses.dataclass(frozen=True)
class Config:
    state_dir: Path
    image_dir: Path
    database_url: str
    libvirt_uri: str
    accel: str
    accel_probe_timeout: float
    bridge: str
    subnet: str
    tap_prefix: str
    default_profile: str
    vcpus: int
    memory_mb: int
    disk_gb: int
    ready_timeout: float
    guest_user: str
    min_free_disk_mb: int
    max_vcpus: int
    max_memory_mb: int
    max_disk_gb: int
    guest_output_max_kb: int
    listen_host: str
    listen_port: int
    reconcile_interval: float
    branch_prefix: str
    max_prompt_chars: int
    max_running_sessions: int
    max_running_per_user: int
    host_reserved_memory_mb: int
    idle_guest_timeout: float
    hook_failure: str
    turn_timeout: float
    agent_line_max_kb: int
    max_events_per_turn: int
    transcript_max_mb: int
    public_url: str
    smtp_host: str
    smtp_port: int
    smtp_from: str
    webhook_allowed_networks: str
    claude_code_model: str
    codex_model: str
    allowed_models: str
    egress_table: str
    proxy_port: int
    transparent_proxy_port: int
    git_proxy_port: int
    egress_service_ports: str
    dns_port: int
    dns_tcp_max_connections: int
    dns_tcp_max_per_sandbox: int
    dns_tcp_idle_timeout: float
    dns_upstream: str
    static_hosts: str
    credentials_file: str
    upstream_ca_file: str
    egress_blocked_networks: str
    egress_methods_limited: str
    egress_methods_custom: str
    egress_methods_full: str
    egress_ports_limited: str
    egress_ports_custom: str
    egress_request_rate: int
    egress_bandwidth_kbytes: int
    audit_retention_days: float
    audit_max_rows: int
    proxy_restart_delay: float
    git_mirror_refresh_interval: float
    git_token_ttl: float
    git_upstream_timeout: float
    git_max_push_mb: int
    tls_cert: str = ""
    tls_key: str = ""
    http_redirect_port: int = 0
    web_threads: int = 512
    signin_window: float = 900.0
    signin_max_failures: int = 5
    signin_max_failures_per_address: int = 20
    signin_lockout: float = 900.0
    signin_audit_retention_days: float = 90.0
    source: tuple[str, ...] = ()  # where the values came from, for `appliance doctor`
    log_format: str = "text"
    max_request_mb: int = 4
    user_monthly_budget_usd: float = 0.0
    team_monthly_budget_usd: float = 0.0
    model_prices: str = "claude-opus=15,75,1.5,18.75; claude-haiku=0.8,4,0.08,1; *=3,15,0.3,3.75"
    archived_session_retention_days: float = 0.0
    forge_poll_interval: float = 300.0
    autofix_max_turns_per_hour: int = 3
    forge_session_label: str = "appliance"
    forge_webhook_max_kb: int = 1024
    guest_templates: str = "off"
    template_dir: str = "/dev/shm/appliance-templates"
    warm_pool: str = "auto"
    environment_cache: str = "on"
    environment_cache_days: float = 7.0
    cluster_mode: str = "off"
    host_id: str = ""
    host_address: str = ""
    host_capacity: int = 2
    host_heartbeat_interval: float = 5.0
    host_stale_after: float = 30.0
    worker_database_url: str = ""
    control_url: str = ""
    control_fingerprint: str = ""
    control_ca: str = ""
    host_credential: str = ""
    turn_runner: str = "guests"
    dry_run_turn_seconds: float = 1.0

    @property
    def templated(self) -> bool:
        """Guests start from a saved template of their image (appliance/sandbox/templates.py)."""
        return self.guest_templates == "on"

    def warm_pool_size(self, available_memory_mb: int) -> int:
        """Pool slots to keep: the configured number, or for "auto" one per 4 guests' worth of
        available memory, at most 4 — and none without templates (a slot is a clone)."""
        if not self.templated:
            return 0
        if self.warm_pool != "auto":
            return int(self.warm_pool)
        return max(0, min(4, available_memory_mb // (4 * self.memory_mb)))

    @property
    def this_host(self) -> str:
        """This host's id among worker hosts (host_id, or the machine's name)."""
        return self.host_id or socket.gethostname()

    @property
    def clustered(self) -> bool:
        """Turns run as jobs on worker hosts (PostgreSQL), not in this process's engine."""
        return self.cluster_mode == "on"

    @property
    def appliance_host(self) -> str | None:
        """This host's id when clustered (the worker's host_id, default the hostname); None on one server."""
        return self.this_host if self.clustered else None

    @property
    def sandbox_dir(self) -> Path:
        """Per-sandbox files: overlays, keys, console logs, fw_cfg blobs."""
        return self.state_dir / "sandboxes"

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def bridge_address(self) -> ipaddress.IPv4Address:
        """The host's own address on the bridge: the first host of the subnet."""
        return next(self.network.hosts())


def _coerce(name: str, value: object, default: object, origin: str) -> object:
    want = type(default)
    if isinstance(value, want) and not (want is int and isinstance(value, bool)):
        return value
    try:
        if want is int:
            return int(str(value))
        if want is float:
            return float(str(value))
        if want is str:
            if isinstance(value, (dict, list)):
                raise ValueError
            return str(value)
    except ValueError:
        pass
    raise ConfigError(
        f"{origin}: setting '{name}' must be a {want.__name__}, got {value!r}",
        hint="fix the value or remove it to use the default",
    )


def read_file(path: Path) -> dict[str, object]:
    """The file's settings, flat; unknown sections or settings are refused."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}", hint="fix the file's syntax") from e
    flat: dict[str, object] = {}
    for section, values in data.items():
        if section not in DEFAULTS or not isinstance(values, dict):
            raise ConfigError(
                f"{path}: unknown section [{section}]",
                hint=f"known sections: {', '.join(DEFAULTS)}",
            )
        for key, value in values.items():
            if key not in DEFAULTS[section]:
                raise ConfigError(
                    f"{path}: unknown setting '{key}' in [{section}]",
                    hint=f"known settings there: {', '.join(DEFAULTS[section])}",
                )
            flat[key] = value
    return flat


def load(env: dict[str, str] | None = None, overrides: dict[str, object] | None = None) -> Config:
    """Build the configuration. `overrides` (tests) wins over everything."""
    env = dict(os.environ if env is None else env)
    defaults = _flat_defaults()
    values = dict(defaults)
    sources = ["defaults"]

    path = Path(env.get("APPLIANCE_CONFIG", DEFAULT_CONFIG_PATH))
    from_file = read_file(path)
    if from_file:
        sources.append(str(path))
    for key, value in from_file.items():
        values[key] = _coerce(key, value, defaults[key], str(path))

    for key, default in defaults.items():
        var = "APPLIANCE_" + key.upper()
        if var in env:
            values[key] = _coerce(key, env[var], default, var)
            sources.append(var)

    for key, value in (overrides or {}).items():
        if key not in defaults:
            raise ConfigError(f"unknown setting '{key}'")
        values[key] = _coerce(key, value, defaults[key], "override")

    state_dir = Path(str(values["state_dir"])).absolute()
    values["state_dir"] = state_dir
    values["image_dir"] = Path(str(values["image_dir"])).absolute() if values["image_dir"] else state_dir / "images"
    if not values["database_url"]:
        values["database_url"] = f"sqlite:///{state_dir / 'appliance.db'}"
    _validate(values)
    return Config(**values, source=tuple(sources))


def _validate(values: dict[str, object]) -> None:
    if values["accel"] not in ACCEL_MODES:
        raise ConfigError(
            f"accel must be one of {', '.join(ACCEL_MODES)}, got {values['accel']!r}",
            hint="use 'auto' to let the appliance probe what works on this host",
        )
    try:
        net = ipaddress.IPv4Network(str(values["subnet"]))
    except ValueError as e:
        raise ConfigError(f"subnet {values['subnet']!r} is not an IPv4 network: {e}") from e
    if net.num_addresses < 8:
        raise ConfigError(f"subnet {net} is too small", hint="use a /29 or larger, e.g. a /24")
    if len(str(values["bridge"])) > 15 or len(str(values["tap_prefix"])) > 6:
        raise ConfigError("bridge name must be at most 15 characters and tap_prefix at most 6")
    for key in ("vcpus", "memory_mb", "disk_gb"):
        if int(values[key]) <= 0:  # type: ignore[arg-type]
            raise ConfigError(f"{key} must be positive")
        if int(values[key]) > int(values[f"max_{key}"]):  # type: ignore[arg-type]
            raise ConfigError(f"{key} {values[key]} is over max_{key} {values[f'max_{key}']}",
                              hint=f"raise max_{key} or lower {key} in the [sandbox] section")
    if int(values.get("max_request_mb", 4)) <= 0:  # type: ignore[arg-type]
        raise ConfigError("max_request_mb must be positive", hint="4 is plenty for prompts and settings")
    if float(values.get("forge_poll_interval", 0)) < 0 or int(values.get("autofix_max_turns_per_hour", 0)) < 0:
        raise ConfigError("forge_poll_interval and autofix_max_turns_per_hour must not be negative",
                          hint="0 turns polling off (webhooks only) / auto-fix turns off")
    for key in ("guest_output_max_kb", "agent_line_max_kb", "max_events_per_turn", "transcript_max_mb",
                "forge_webhook_max_kb"):
        if int(values[key]) <= 0:  # type: ignore[arg-type]
            raise ConfigError(f"{key} must be positive, got {values[key]!r}")
    for key in ("dns_tcp_max_connections", "dns_tcp_max_per_sandbox", "dns_tcp_idle_timeout"):
        if values[key] <= 0:  # type: ignore[operator]
            raise ConfigError(f"{key} must be positive, got {values[key]!r}")
    for net in str(values["webhook_allowed_networks"]).replace(",", " ").split():
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError as e:
            raise ConfigError(f"webhook_allowed_networks: {net!r} is not a network: {e}",
                              hint="write networks like 10.20.0.0/16, separated by commas") from e
    if bool(values.get("tls_cert")) != bool(values.get("tls_key")):
        raise ConfigError("tls_cert and tls_key go together: one is set, the other is empty",
                          hint="set both (PEM files), or neither for plain HTTP")
    for key in ("web_threads", "signin_max_failures", "signin_max_failures_per_address"):
        if int(values.get(key, 1)) <= 0:  # type: ignore[arg-type]
            raise ConfigError(f"{key} must be positive")
    for key in ("user_monthly_budget_usd", "team_monthly_budget_usd"):
        if float(values.get(key, 0.0)) < 0:  # type: ignore[arg-type]
            raise ConfigError(f"{key} must be 0 (no budget) or more, got {values[key]!r}")
    parse_prices(str(values.get("model_prices", "")))
    if values.get("guest_templates", "off") not in OFF_ON:
        raise ConfigError(f"guest_templates must be one of {', '.join(OFF_ON)}, got {values['guest_templates']!r}")
    if values.get("environment_cache", "on") not in OFF_ON:
        raise ConfigError(f"environment_cache must be one of {', '.join(OFF_ON)}, got {values['environment_cache']!r}")
    if float(values.get("environment_cache_days", 7.0)) <= 0:  # type: ignore[arg-type]
        raise ConfigError("environment_cache_days must be positive", hint="turn the cache off with environment_cache")
    pool = str(values.get("warm_pool", "auto"))
    if pool != "auto" and not (pool.isdigit() and int(pool) <= 64):
        raise ConfigError(f"warm_pool must be \"auto\" or a number of guests from 0 to 64, got {pool!r}",
                          hint="0 disables the warm pool")
    _validate_cluster(values)
    if values.get("log_format", "text") not in LOG_FORMATS:
        raise ConfigError(f"log_format must be one of {', '.join(LOG_FORMATS)}, got {values['log_format']!r}",
                          hint="use 'json' for log collectors, 'text' for people")



OFF_ON = ("off", "on")  # the values of on/off switches (the TOML reader has no booleans for settings)
CLUSTER_MODES = OFF_ON
TURN_RUNNERS = ("guests", "dry-run")


def _validate_cluster(values: dict[str, object]) -> None:
    if values["cluster_mode"] not in CLUSTER_MODES:
        raise ConfigError(f"cluster_mode must be one of {', '.join(CLUSTER_MODES)}, got {values['cluster_mode']!r}",
                          hint="'off' for one server, 'on' for control plus worker hosts sharing PostgreSQL")
    if values["cluster_mode"] == "on" and not str(values["database_url"]).startswith(("postgresql://", "postgres://")):
        raise ConfigError("more than one host (cluster_mode = \"on\") needs PostgreSQL; database_url is "
                          f"{values['database_url']!r}",
                          hint="set database_url = \"postgresql://USER@HOST/DB\" on control and every worker "
                               "(SQLite is for one server), or set cluster_mode = \"off\"")
    if values["worker_database_url"] and not str(values["worker_database_url"]).startswith(
            ("postgresql://", "postgres://")):
        raise ConfigError("worker_database_url must be a postgresql:// URL (workers share control's PostgreSQL)",
                          hint="set it to how the worker hosts reach control's database, or leave it empty")
    if values["turn_runner"] not in TURN_RUNNERS:
        raise ConfigError(f"turn_runner must be one of {', '.join(TURN_RUNNERS)}, got {values['turn_runner']!r}",
                          hint="'guests' runs turns in guests; 'dry-run' is for the guest-less tests only")
    for key in ("host_capacity", "host_heartbeat_interval", "host_stale_after"):
        if values[key] <= 0:  # type: ignore[operator]
            raise ConfigError(f"{key} must be positive, got {values[key]!r}")
