import subprocess

import pytest

from appliance.environments.dotenv import DotenvError, parse, render


def test_accepted_forms():
    text = """
# a comment
API_KEY=your_api_key
DEBUG=true   # trailing comment
export PATH_EXTRA=/opt/bin
EMPTY=
SINGLE='literal $HOME \\n # not a comment'
DOUBLE="line1\\nline2 \\"quoted\\""
SPACED =  padded value
"""
    assert parse(text) == {
        "API_KEY": "your_api_key", "DEBUG": "true", "PATH_EXTRA": "/opt/bin", "EMPTY": "",
        "SINGLE": "literal $HOME \\n # not a comment", "DOUBLE": 'line1\nline2 "quoted"', "SPACED": "padded value",
    }


@pytest.mark.parametrize("text,line,needle", [
    ("OK=1\njust words\n", 2, "expected KEY=value"),
    ("1BAD=x", 1, "not a valid variable name"),
    ("A=1\n\nB='open", 3, "unterminated single quote"),
    ('C="open', 1, "unterminated double quote"),
    ('D="x" trailing', 1, "unexpected text after the closing quote"),
    ('E="\\q"', 1, "unknown escape"),
    ("F=it's", 1, "quotes inside an unquoted value"),
    ("G=1\nG=2", 2, "set twice"),
])
def test_errors_name_the_line(text, line, needle):
    with pytest.raises(DotenvError) as e:
        parse(text)
    assert any(n == line and needle in why for n, why in e.value.problems), e.value.problems
    assert f"line {line}:" in e.value.message


def test_every_bad_line_is_reported_at_once():
    with pytest.raises(DotenvError) as e:
        parse("bad one\nOK=1\nbad two\n")
    assert [n for n, _ in e.value.problems] == [1, 3]


def test_render_round_trips_through_a_real_shell():
    values = {"A": "plain", "B": "it's \"quoted\" $HOME `x`", "C": "multi\nline", "D": ""}
    script = render(values) + 'printf "%s\\0" "$A" "$B" "$C" "$D"'
    out = subprocess.run(["bash", "-c", script], capture_output=True, check=True).stdout
    assert out.split(b"\0")[:4] == [v.encode() for v in values.values()]
