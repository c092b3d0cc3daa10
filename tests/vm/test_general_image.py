"""The default image, `general`, booted for real: `check-tools --json` reports every promised tool
with its expected major version, and a tiny project per ecosystem builds and passes its tests
inside the guest, offline, as the unprivileged guest user — plus PostgreSQL and Redis started on
demand, and Docker building and running an image FROM scratch (no registry)."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from appliance.models import Sandbox
from appliance.sandbox.manager import SandboxRequest

pytestmark = [pytest.mark.vm, pytest.mark.root]

# label in check-tools → the major version (a prefix of the version it reports) the image promises
EXPECTED = {
    ("Languages", "Python"): "3.13", ("Languages", "Node.js"): "24", ("Languages", "Ruby"): "3.3",
    ("Languages", "PHP"): "8.4", ("Languages", "Java"): "21", ("Languages", "Go"): "1.24",
    ("Languages", "Rust"): "1.85", ("Languages", "GCC"): "14", ("Languages", "G++"): "14",
    ("Languages", "Clang"): "19",
    ("Package managers", "pip"): "", ("Package managers", "poetry"): "2", ("Package managers", "uv"): "",
    ("Package managers", "npm"): "11", ("Package managers", "yarn"): "", ("Package managers", "pnpm"): "",
    ("Package managers", "bun"): "1", ("Package managers", "gem"): "", ("Package managers", "bundler"): "2",
    ("Package managers", "rbenv"): "1", ("Package managers", "composer"): "2", ("Package managers", "Maven"): "3",
    ("Package managers", "Gradle"): "", ("Package managers", "cargo"): "1.85",
    ("Dev tools", "git"): "2", ("Dev tools", "make"): "4", ("Dev tools", "cmake"): "3",
    ("Linters and test tools", "pytest"): "8", ("Linters and test tools", "ruff"): "",
    ("Linters and test tools", "eslint"): "", ("Linters and test tools", "prettier"): "3",
    ("Linters and test tools", "shellcheck"): "0.10",
    ("Containers", "Docker"): "26", ("Containers", "Docker Compose"): "2",
    ("Coding agents", "Claude Code"): "2", ("Coding agents", "Codex"): "0",
    ("Databases", "PostgreSQL"): "17", ("Databases", "Redis"): "8",
}


@pytest.fixture(scope="module")
def guest(manager):
    sandbox = manager.create(SandboxRequest(profile="general", memory_mb=2048))
    try:
        with manager.ssh(sandbox) as ssh:
            yield ssh
    finally:
        if Sandbox.get_by_id(sandbox.id).live:
            manager.destroy(sandbox.id)


def run(ssh, script: str, timeout: float = 600) -> str:
    """Run a bash script as the guest user in a fresh directory; fail with its output if it fails."""
    result = ssh.exec("set -euo pipefail; cd \"$(mktemp -d)\"; " + script, timeout=timeout)
    output = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    assert result.exit_code == 0, output[-3000:]
    return output


def files(**contents: str) -> str:
    """Shell lines that write the given files (name=content; '__' in a name means '/')."""
    lines = []
    for name, text in contents.items():
        path = name.replace("__", "/")
        lines.append(f"mkdir -p \"$(dirname {shlex.quote(path)})\"; printf %s {shlex.quote(text)} > {shlex.quote(path)}")
    return "; ".join(lines) + "; "


def test_check_tools_reports_every_promised_tool_with_its_major_version(guest):
    # a generous timeout per version check: Node and Ruby start slowly under TCG, eight at a time
    report = json.loads(run(guest, "check-tools --json --timeout 240"))
    missing, wrong = [], []
    for (section, label), major in EXPECTED.items():
        version = report.get(section, {}).get(label)
        if version is None:
            missing.append(f"{section}/{label}")
        elif major and not re.match(rf"v?{re.escape(major)}(\D|$)", version):
            wrong.append(f"{label}: {version} (want {major}.x)")
    assert not missing and not wrong, f"missing: {missing}; wrong versions: {wrong}"


def test_python_pip_and_pytest_in_the_default_virtualenv(guest):
    out = run(guest, files(**{
        "pyproject.toml": '[project]\nname = "calc"\nversion = "1.0"\n[build-system]\n'
                          'requires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n',
        "calc.py": "def add(a, b):\n    return a + b\n",
        "tests__test_calc.py": "import numpy, pandas, scipy\nfrom calc import add\n\n"
                               "def test_add():\n    assert add(2, 3) == numpy.int64(5)\n",
    }) + "command -v pip python; pip install --no-index --no-build-isolation -e . "
         "&& python -c 'import calc; print(calc.__file__)' && cd tests && python -m pytest -q -p no:cacheprovider")
    assert "/opt/venv/bin/pip" in out and "1 passed" in out


def test_node_npm_test_and_bun_test(guest):
    out = run(guest, files(**{
        "node__package.json": '{"name": "t", "version": "1.0.0", "scripts": {"test": "node --test"}}',
        "node__test__sum.test.js": "const test = require('node:test'); const assert = require('node:assert');\n"
                             "test('sum', () => assert.strictEqual(1 + 2, 3));\n",
        "bun__sum.test.ts": "import { expect, test } from 'bun:test';\ntest('sum', () => expect(1 + 2).toBe(3));\n",
    }) + "(cd node && npm test 2>&1) && cd bun && bun test 2>&1")
    assert re.search(r"^\S* ?pass 1$", out, re.M), out  # node's runner ("ℹ pass 1" or "# pass 1")
    assert re.search(r"^ 1 pass$", out, re.M), out       # bun's


def test_ruby_bundle_exec_with_a_local_gem(guest):
    out = run(guest, files(**{
        "greeter__greeter.gemspec": 'Gem::Specification.new do |s|\n  s.name = "greeter"\n  s.version = "1.0.0"\n'
                                    '  s.summary = "hi"\n  s.authors = ["t"]\n  s.files = ["lib/greeter.rb"]\nend\n',
        "greeter__lib__greeter.rb": 'module Greeter\n  def self.hi = "hello from greeter"\nend\n',
        "Gemfile": 'source "https://rubygems.org"\ngem "greeter", path: "greeter"\n',
    }) + "bundle config set --local path vendor/bundle && bundle install --local >/dev/null "
         "&& bundle exec ruby -e 'require \"greeter\"; puts Greeter.hi'")
    assert "hello from greeter" in out


def test_php_and_composer_autoload(guest):
    out = run(guest, files(**{
        "composer.json": '{"autoload": {"psr-4": {"App\\\\": "src/"}}}',
        "src__Calc.php": "<?php\nnamespace App;\nclass Calc { public static function add($a, $b) { return $a + $b; } }\n",
        "main.php": "<?php\nrequire 'vendor/autoload.php';\necho 'sum=' . App\\Calc::add(2, 3) . PHP_EOL;\n",
    }) + "composer dump-autoload --quiet && php main.php")
    assert "sum=5" in out


def test_java_compiles_and_runs(guest):
    out = run(guest, files(**{"Hello.java": 'public class Hello { public static void main(String[] a) '
                                            '{ System.out.println("hello " + Runtime.version().feature()); } }\n'})
              + "javac Hello.java && java Hello && mvn --version | head -1")
    assert "hello 21" in out and "Apache Maven 3" in out


def test_go_test(guest):
    out = run(guest, files(**{
        "go.mod": "module example.com/calc\n\ngo 1.24\n",
        "calc.go": "package calc\n\nfunc Add(a, b int) int { return a + b }\n",
        "calc_test.go": 'package calc\n\nimport "testing"\n\nfunc TestAdd(t *testing.T) {\n'
                        '\tif Add(2, 3) != 5 {\n\t\tt.Fatal("bad")\n\t}\n}\n',
    }) + "GOPROXY=off GOTOOLCHAIN=local go test ./... 2>&1", timeout=900)
    assert re.search(r"^ok\s+example.com/calc", out, re.M), out


def test_rust_cargo_test(guest):
    out = run(guest, "cargo new --lib --quiet calc && cd calc && cargo test --offline 2>&1", timeout=900)
    assert "test result: ok" in out


def test_c_and_cpp_with_gcc_and_clang(guest):
    out = run(guest, files(**{
        "hello.c": '#include <stdio.h>\nint main(void) { printf("c ok\\n"); return 0; }\n',
        "hello.cpp": '#include <iostream>\nint main() { std::cout << "cpp ok" << std::endl; }\n',
    }) + "for cc in gcc clang; do $cc -O2 -o c-$cc hello.c && ./c-$cc; done; "
         "for cxx in g++ clang++; do $cxx -O2 -o cpp-$cxx hello.cpp && ./cpp-$cxx; done")
    assert out.count("c ok") == 2 and out.count("cpp ok") == 2


def test_postgresql_and_redis_start_on_demand(guest):
    assert guest.exec("systemctl is-active postgresql redis-server").exit_code != 0, "not started at boot"
    out = run(guest, "sudo systemctl start postgresql && sudo -u postgres psql -tAc 'select 6 * 7'")
    assert out.strip().splitlines()[-1] == "42"
    out = run(guest, "sudo systemctl start redis-server && redis-cli ping")
    assert "PONG" in out


def test_docker_builds_and_runs_an_image_from_scratch(guest):
    out = run(guest, files(**{
        "hello.c": '#include <stdio.h>\nint main(void) { printf("hello from a container\\n"); return 0; }\n',
        "Dockerfile": 'FROM scratch\nCOPY hello /hello\nCMD ["/hello"]\n',
    }) + "gcc -static -O2 -o hello hello.c && docker build -q -t hello-scratch . >/dev/null "
         "&& docker run --rm --network none hello-scratch && docker compose version", timeout=900)
    assert "hello from a container" in out and "Docker Compose version" in out
