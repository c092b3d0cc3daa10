"""Every `appliance COMMAND [SUBCOMMAND]` a hint, message, template, script or doc names exists in the
real parser of appliance.cli.main: a hint that sends people to a command that is not there (as
'appliance repos' once did) is a dead end."""

from __future__ import annotations

import argparse
import re

from appliance.cli.main import build_parser

from helpers import ROOT

# where people read command names: the code's hints and messages, templates, scripts, docs
SOURCES = ("appliance", "webui", "netpolicy", "vmimages", "scripts", "systemd", "docs", "README.md")
SKIP_SUFFIXES = (".pyc", ".png", ".jpg", ".ico", ".woff", ".woff2", ".qcow2", ".gz")

# A mention: "appliance WORD [WORD]" opened by a quote, a backtick or a tag (hints and messages:
# 'appliance repo add', `appliance doctor`, <code>appliance …), or at the start of a line (usage
# blocks in docstrings, README and scripts), optionally behind a path (.venv/bin/appliance …).
MENTION = re.compile(
    r"""(?:^[ \t]*|(?<=['"`>]))(?:sudo[ \t]+)?(?:[^\s'"`<>]*/)?appliance[ \t]+([a-z][a-z0-9-]*)(?:[ \t]+([a-z][a-z0-9-]*))?""",
    re.MULTILINE,
)
# Sentences that start with the word "appliance" and are not commands.
PROSE = (
    "appliance listening",  # the daemon's "appliance listening on URL"
    "appliance stopped",  # its last log line
    "appliance askpass",  # the git credential helper's name in its own error
    "appliance git",  # the git proxy's HTTP auth realm
    "appliance sandbox user",  # the guest user's GECOS comment
    "appliance still",  # "events written by a newer appliance still load"
    "appliance decides",  # netpolicy/bridge.py's docstring
)


def command_tree(parser: argparse.ArgumentParser) -> dict[str, set[str] | None]:
    """Each command, with the names of its subcommands (None when it takes none)."""

    def subcommands(p: argparse.ArgumentParser):
        return next((a.choices for a in p._actions if isinstance(a, argparse._SubParsersAction)), None)

    return {name: (set(subs) if (subs := subcommands(p)) is not None else None)
            for name, p in subcommands(parser).items()}


def wrong_mentions(text: str, tree: dict[str, set[str] | None]) -> list[str]:
    wrong = []
    for m in MENTION.finditer(text):
        command, sub = m.group(1), m.group(2)
        said = f"appliance {command}" + (f" {sub}" if sub else "")
        if any(said == p or said.startswith(p + " ") for p in PROSE):
            continue
        line = text.count("\n", 0, m.start()) + 1
        if command not in tree:
            wrong.append(f"line {line}: '{said}': there is no command '{command}'")
        elif sub and tree[command] is not None and sub not in tree[command]:
            wrong.append(f"line {line}: '{said}': 'appliance {command}' has no '{sub}' "
                         f"(it has: {', '.join(sorted(tree[command]))})")
    return wrong


def source_files():
    for name in SOURCES:
        path = ROOT / name
        for f in [path] if path.is_file() else sorted(path.rglob("*")):
            if f.is_file() and f.suffix not in SKIP_SUFFIXES and not {"node_modules", "__pycache__"} & set(f.parts):
                yield f


def test_every_command_a_hint_or_message_names_exists():
    tree = command_tree(build_parser())
    wrong, scanned = [], 0
    for f in source_files():
        try:
            text = f.read_text()
        except UnicodeDecodeError:
            continue
        scanned += 1
        wrong += [f"{f.relative_to(ROOT)} {w}" for w in wrong_mentions(text, tree)]
    assert scanned > 50  # the sources were found
    assert not wrong, "commands named that do not exist:\n" + "\n".join(wrong)


def test_the_check_finds_a_wrong_name():
    tree = command_tree(build_parser())
    assert tree["repo"] == {"add", "list", "remove"} and tree["doctor"] is None
    text = '''raise NotFound("unknown repository", hint="see 'appliance repos' or ask an admin")
    print("run `appliance user frobnicate`")
    <code>appliance repo list</code> and 'appliance env list' and `appliance logs -f ID`
    appliance sandbox destroy SANDBOX
    .venv/bin/appliance image bake minimal
'''
    assert wrong_mentions(text, tree) == [
        "line 1: 'appliance repos': there is no command 'repos'",
        "line 2: 'appliance user frobnicate': 'appliance user' has no 'frobnicate' (it has: add, disable, enable, first-admin, token)",
        "line 5: 'appliance image bake': 'appliance image' has no 'bake' (it has: build, hash, list, pull)",
    ]
