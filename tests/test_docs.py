"""The README stays honest: every setting is documented (README table and .env.example), every
message of the troubleshooting table is one the code really prints, and the layout it describes
(docs/ARCHITECTURE.md) is the package's."""

from __future__ import annotations

import ast
import re

from helpers import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
# The package's source, with implicitly concatenated string literals joined ("a " "b" across lines).
CODE = re.sub(r"([\"'])\s*\n\s*[rbf]*([\"'])", "",
              "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "catalogue").rglob("*.py")))


def settings_read_by_the_code() -> set[str]:
    """Every NAME the settings module reads: an upper-case name passed to a call along with the
    environment (env.get("NAME"), _int(env, "NAME", ...), any reader of that shape)."""
    tree = ast.parse((REPO / "catalogue" / "core" / "settings.py").read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        env_arg = any(isinstance(a, ast.Name) and a.id in ("env", "environ") for a in node.args) or (
            isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
            and node.func.value.id in ("env", "environ"))
        if env_arg:
            names |= {a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
                      and re.fullmatch(r"[A-Z][A-Z0-9_]+", a.value)}
    return names


def _section(title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.M | re.S)
    assert m, f"README has no section « {title} »"
    return m.group(1)


def test_every_setting_is_in_the_readme_table_and_env_example():
    names = settings_read_by_the_code()
    assert {"GEMINI_API_KEY", "BACKEND_URL", "MAX_COST"} <= names  # the reader finds them
    table = {n for row in _section("Settings").splitlines() if row.startswith("| `")
             for n in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}
    example = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (REPO / ".env.example").read_text(encoding="utf-8"), re.M))
    assert names - table == set(), "settings missing from the README table"
    assert names - example == set(), "settings missing from .env.example"
    assert table - names - {"GOOGLE_GEMINI_BASE_URL"} == set(), "README documents settings the code ignores"


def test_the_typo_check_knows_every_setting():
    from catalogue.core.settings import KNOWN_NAMES

    assert set(KNOWN_NAMES) == settings_read_by_the_code() | {"GOOGLE_GEMINI_BASE_URL"}


def test_every_troubleshooting_message_exists_in_the_code():
    rows = [r for r in _section("Troubleshooting").splitlines() if r.startswith("| ") and not r.startswith("| message")]
    assert len(rows) >= 10
    for row in rows:
        cell = row.split("|")[1]
        quoted = re.findall(r"«\s*(.*?)\s*»(?!\s*»)", cell) or re.findall(r"[A-Z]{5,}", cell)
        assert quoted, row
        for message in quoted:
            for fragment in re.split(r"…|« X »|« X", message):
                fragment = fragment.strip(" «»,")
                if len(fragment) >= 5:
                    assert fragment in CODE, f"README troubleshooting quotes « {fragment} », the code never says it"


def test_architecture_lists_every_module_of_the_package():
    arch = (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    tree = re.search(r"```\n(.*?)```", arch, re.S).group(1)
    listed, package = set(), None
    for line in tree.splitlines():
        m = re.match(r"^  (\w+)/", line)
        if m:
            package = m.group(1)
            continue
        m = re.match(r"^    (\w+\.py)\b", line)
        if m and package:
            listed.add(f"{package}/{m.group(1)}")
    actual = {f"{p.parent.name}/{p.name}" for p in (REPO / "catalogue").glob("*/*.py") if p.name != "__init__.py"}
    assert actual - listed == set(), "modules missing from docs/ARCHITECTURE.md"
    assert listed - actual == set(), "docs/ARCHITECTURE.md lists modules that do not exist"
