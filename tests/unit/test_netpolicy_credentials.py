"""The model API credentials file the proxy injects from (netpolicy/credentials.py)."""

from __future__ import annotations

import stat

import pytest

from netpolicy.credentials import load_credentials, write_credentials


def test_credentials_file_rules(tmp_path):
    f = tmp_path / "c.toml"
    assert load_credentials(f) == {}
    f.write_text('["API.Anthropic.com"]\nx-api-key = "v"\n')
    f.chmod(0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        load_credentials(f)
    f.chmod(0o600)
    assert load_credentials(f) == {"api.anthropic.com": {"x-api-key": "v"}}
    for bad in ('["1.2.3.4"]\na = "v"\n', '["a.example"]\n"bad header" = "v"\n', 'x = "v"\n',
                '["a.example"]\nh = "v\\r\\nInjected: 1"\n'):  # fmt: skip
        f.write_text(bad)
        with pytest.raises(ValueError):
            load_credentials(f)


def test_written_file_is_private_and_reads_back(tmp_path):
    f = tmp_path / "etc" / "credentials.toml"
    creds = {"api.anthropic.com": {"x-api-key": 'sk-ant-"quoted"\\x'}, "api.openai.com": {"authorization": "Bearer k"}}
    write_credentials(f, creds)
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert load_credentials(f) == creds


def test_a_value_with_a_line_break_is_refused_and_the_file_kept(tmp_path):
    f = tmp_path / "credentials.toml"
    write_credentials(f, {"api.anthropic.com": {"x-api-key": "old"}})
    with pytest.raises(ValueError, match="line breaks"):
        write_credentials(f, {"api.anthropic.com": {"x-api-key": "new\nInjected: 1"}})
    assert load_credentials(f) == {"api.anthropic.com": {"x-api-key": "old"}}
