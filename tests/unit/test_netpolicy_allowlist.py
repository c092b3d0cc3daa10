import pytest

from netpolicy.allowlist import (
    DEFAULT_ALLOWLIST,
    DEFAULT_DOMAINS,
    Allowlist,
    Policy,
    PolicyError,
    matches,
    normalize_host,
    parse_methods,
    validate_pattern,
)


def test_default_list_is_the_reference_pages():
    assert len(DEFAULT_DOMAINS) == 189
    assert len(set(DEFAULT_DOMAINS)) == len(DEFAULT_DOMAINS)
    for name in ("api.anthropic.com", "github.com", "pypi.org", "files.pythonhosted.org", "registry.npmjs.org",
                 "*.gcr.io", "*.amazonaws.com", "*.modelcontextprotocol.io", "www.schemastore.org"):  # fmt: skip
        assert name in DEFAULT_DOMAINS
    assert [validate_pattern(d) for d in DEFAULT_DOMAINS] == list(DEFAULT_DOMAINS)


@pytest.mark.parametrize(
    "host, allowed",
    [
        ("a.example.com", True),
        ("deep.a.example.com", True),
        ("A.Example.COM.", True),
        ("example.com", False),  # the base itself is not a subdomain
        ("example.com.evil.net", False),
        ("a.example.com.evil.net", False),
        ("aexample.com", False),
        ("evil-example.com", False),
        (".example.com", False),
        ("a..example.com", False),
        ("", False),
    ],
)
def test_wildcard_matching_is_exact(host, allowed):
    assert matches("*.example.com", host) is allowed
    assert (Allowlist(["*.example.com"]).match(host) is not None) is allowed


def test_exact_patterns_match_only_themselves():
    al = Allowlist(["pypi.org"])
    assert "pypi.org" in al and "PYPI.ORG." in al
    assert "www.pypi.org" not in al and "pypi.org.evil.net" not in al and "xpypi.org" not in al


def test_defaults_wildcards():
    assert DEFAULT_ALLOWLIST.match("eu.gcr.io") == "*.gcr.io"
    assert DEFAULT_ALLOWLIST.match("gcr.io") == "gcr.io"
    assert DEFAULT_ALLOWLIST.match("s3.us-east-1.amazonaws.com") == "*.amazonaws.com"
    assert DEFAULT_ALLOWLIST.match("amazonaws.com") is None
    assert DEFAULT_ALLOWLIST.match("evil.example") is None
    assert DEFAULT_ALLOWLIST.match("203.0.113.10") is None


def test_normalize_host():
    assert normalize_host("PyPI.org.") == "pypi.org"
    assert normalize_host("bücher.example") == "xn--bcher-kva.example"
    assert normalize_host("[::1]") == "::1"
    for bad in ("", "a b.com", "-a.com", "a-.com", "a" * 64 + ".com", "x/y", "a..b"):
        with pytest.raises(PolicyError):
            normalize_host(bad)


@pytest.mark.parametrize(
    "bad",
    ["", "*", "*.com", "a.*.com", "*a.com", "exa*mple.com", "*.*.example.com", "http://example.com",
     "example.com:443", "user@example.com", "1.2.3.4", "::1", "example.com/path", "-bad.com"],
)  # fmt: skip
def test_invalid_patterns_are_refused(bad):
    with pytest.raises(PolicyError):
        validate_pattern(bad)


def test_patterns_are_normalised():
    assert validate_pattern(" *.Example.COM ") == "*.example.com"
    assert validate_pattern("Bücher.example") == "xn--bcher-kva.example"


def test_levels():
    none, limited, full = Policy.make("none"), Policy.make(), Policy.make("full")
    assert limited.level == "limited"
    assert not none.check_host("pypi.org") and "level none" in none.check_host("pypi.org").reason
    assert limited.check_host("pypi.org") and not limited.check_host("evil.example")
    assert full.check_host("evil.example") and full.check_host("203.0.113.10")


def test_custom_with_and_without_defaults():
    only = Policy.make("custom", ["*.example.com", "intranet.example.org"])
    both = Policy.make("custom", ["*.example.com"], include_defaults=True)
    assert only.check_host("a.example.com") and only.check_host("intranet.example.org")
    assert not only.check_host("pypi.org")
    assert both.check_host("pypi.org") and both.check_host("a.example.com")
    assert only.describe == "custom" and both.describe == "custom + defaults"


def test_bare_ip_refused_unless_full():
    for level in ("none", "limited"):
        d = Policy.make(level).check_host("203.0.113.10")
        assert not d and "bare IP address" in d.reason
    assert not Policy.make("custom", ["*.example.com"]).check_host("::1")
    assert Policy.make("full").check_host("203.0.113.10")


def test_policy_validation():
    with pytest.raises(PolicyError, match="unknown network access level"):
        Policy.make("open")
    with pytest.raises(PolicyError, match="only applies to the 'custom' level"):
        Policy.make("limited", ["example.com"])
    with pytest.raises(PolicyError):
        Policy.make("custom", ["*.com"])
    assert Policy.make("limited", include_defaults=True).include_defaults is False


def test_methods():
    assert parse_methods("get, HEAD,options") == ("GET", "HEAD", "OPTIONS")
    assert parse_methods("") is None and parse_methods(None) is None
    with pytest.raises(PolicyError):
        parse_methods("GET;DROP")
    p = Policy.make("limited", methods="GET,HEAD")
    assert p.check_method("get") and not p.check_method("POST")
    assert "POST is not allowed" in p.check_method("POST").reason
    assert Policy.make().check_method("DELETE")


def test_the_agents_model_api_is_reachable_at_every_level_and_nothing_more():
    for level in ("none", "limited", "custom"):
        p = Policy.make(level, ["*.example.com"] if level == "custom" else [], methods="GET",
                        agent_hosts=["API.OpenAI.com."])
        assert p.check_host("api.openai.com") and "model API" in p.check_host("api.openai.com").reason
        assert p.check_method("POST", "api.openai.com")  # the model API is POST, whatever the level's methods
        assert not p.check_method("POST", "pypi.org") and not p.check_method("POST")
        for other in ("openai.com", "x.api.openai.com", "api.openai.com.evil.example", "api.anthropic.com"):
            assert not p.check_host(other) or level == "limited" and other == "api.anthropic.com", (level, other)
    with pytest.raises(PolicyError):
        Policy.make("none", agent_hosts=["203.0.113.9"])
    with pytest.raises(PolicyError):
        Policy.make("none", agent_hosts=["*.openai.com"])


def test_round_trip():
    for p in (Policy.make(), Policy.make("custom", ["*.a.example"], True, "GET"), Policy.make("full"),
              Policy.make("none", agent_hosts=["api.anthropic.com"])):
        assert Policy.from_dict(p.to_dict()) == p
