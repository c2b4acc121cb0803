"""Policy rules: the TOML format, its validation (errors name file and line), and their evaluation.

A rule grants, or with `effect = "deny"` refuses, a permission on cubes to agents and groups:

    [[rule]]
    cubes = ["team-*"]        # names or shell-style globs
    agents = ["alice"]        # agent names, or "*" for every agent
    groups = ["research"]     # group names
    permission = "write"      # read < write < share < admin; each includes the ones before it
    effect = "allow"          # or "deny": refuses this permission and every one above it

Evaluation is pure and total: `effective_level` takes the owner, the matching rules and the stored grants
and returns a level. Ownership always gives admin (rules cannot lock an agent out of its own cubes); a deny
caps what any allow gives; globs match an agent's private cube `@name` only when they start with `@`.
"""

from __future__ import annotations

import fnmatch
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import msgspec

from daemon.cube_settings import CubeRule, check_settings
from daemon.errors import ConfigError, InvalidInput
from daemon.validation import NAME_PATTERN, PRIVATE_CUBE_PREFIX

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PermissionName = Literal["read", "write", "share", "admin"]
PERMISSIONS: tuple[PermissionName, ...] = ("read", "write", "share", "admin")
LEVEL: dict[str, int] = {name: i + 1 for i, name in enumerate(PERMISSIONS)}
NONE, ADMIN = 0, LEVEL["admin"]
EVERYONE = "*"
_PATTERN = re.compile(r"@?[A-Za-z0-9.*?\[\]_-]{1,65}")


class Rule(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    cubes: list[str]
    permission: PermissionName
    agents: list[str] = msgspec.field(default_factory=list)
    groups: list[str] = msgspec.field(default_factory=list)
    effect: Literal["allow", "deny"] = "allow"
    description: str = ""


class PolicyFile(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    rule: list[Rule] = msgspec.field(default_factory=list)
    cube: list[CubeRule] = msgspec.field(default_factory=list)


class SourcedRule(msgspec.Struct, frozen=True):
    """A rule and where it came from, for `cube_members` and error messages."""

    rule: Rule
    source: str  # "team.toml rule 2"


class Grant(msgspec.Struct, frozen=True):
    """A permission granted through `cube_share`, stored in the database."""

    grantee: str  # an agent name, "group:NAME" or "*"
    permission: PermissionName


def _rule_lines(text: str) -> list[int]:
    return [i + 1 for i, line in enumerate(text.splitlines()) if line.strip().startswith("[[rule]]")]


def parse_policy(text: str, source: str) -> list[SourcedRule]:
    """Access rules from one file; a ConfigError names the file, the rule and its line."""
    return parse_policy_file(text, source)[0]


def parse_policy_file(text: str, source: str) -> tuple[list[SourcedRule], list[CubeRule]]:
    """Access rules and cube settings from one file; a ConfigError names the file, the rule and its line."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    lines = _rule_lines(text)

    def where(index: int) -> str:
        line = f", line {lines[index]}" if index < len(lines) else ""
        return f"{source}: rule {index + 1}{line}"

    try:
        parsed = msgspec.convert(raw, PolicyFile)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).partition(" - at `")
        found = re.match(r"\$\.rule\[(\d+)\]\.?(.*)`", path)
        if found:
            key = found.group(2) or "the rule"
            raise ConfigError(f"{where(int(found.group(1)))}: {key}: {message}") from exc
        cube = re.match(r"\$\.cube\[(\d+)\]\.?(.*)`", path)
        if cube:
            key = cube.group(2) or "the table"
            raise ConfigError(f"{source}: [[cube]] {int(cube.group(1)) + 1}: {key}: {message}") from exc
        raise ConfigError(f"{source}: {message} (a policy file holds [[rule]] and [[cube]] tables)") from exc
    rules = []
    for index, rule in enumerate(parsed.rule):
        problem = _check_rule(rule)
        if problem:
            raise ConfigError(f"{where(index)}: {problem}")
        rules.append(SourcedRule(rule, f"{Path(source).name} rule {index + 1}"))
    for index, cube_rule in enumerate(parsed.cube):
        if not _PATTERN.fullmatch(cube_rule.name):
            raise ConfigError(
                f"{source}: [[cube]] {index + 1}: name {cube_rule.name!r} is not a cube name or glob"
            )
        try:
            check_settings(cube_rule)
        except InvalidInput as exc:
            raise ConfigError(f"{source}: [[cube]] {index + 1}: {exc}") from None
    return rules, list(parsed.cube)


def _check_rule(rule: Rule) -> str | None:
    if not rule.cubes:
        return "cubes is empty: name at least one cube or glob"
    for pattern in rule.cubes:
        if not _PATTERN.fullmatch(pattern):
            return f"cubes: {pattern!r} is not a cube name or glob"
    if not rule.agents and not rule.groups:
        return 'name at least one agent (or "*") in agents, or a group in groups'
    for agent in rule.agents:
        if agent != EVERYONE and not NAME_PATTERN.fullmatch(agent):
            return f'agents: {agent!r} is not an agent name or "*"'
    for group in rule.groups:
        if not NAME_PATTERN.fullmatch(group):
            return f"groups: {group!r} is not a group name"
    return None


class PolicyFileLoad(msgspec.Struct, frozen=True):
    """One policy file as read now: its rules and settings, or why it was rejected."""

    name: str
    rules: list[SourcedRule] = msgspec.field(default_factory=list)
    cube_rules: list[CubeRule] = msgspec.field(default_factory=list)
    error: str | None = None


def load_policy_files(directory: Path) -> list[PolicyFileLoad]:
    """Every `*.toml` in the directory, in name order, each read on its own (one broken file does not stop
    the others); a missing directory holds none."""
    if not directory.is_dir():
        return []
    loads = []
    for path in sorted(directory.glob("*.toml")):
        try:
            text = path.read_text(encoding="utf-8")
            rules, cube_rules = parse_policy_file(text, str(path))
        except (OSError, UnicodeDecodeError) as exc:
            loads.append(PolicyFileLoad(path.name, error=f"{path}: cannot read the policy file: {exc}"))
        except ConfigError as exc:
            loads.append(PolicyFileLoad(path.name, error=str(exc)))
        else:
            loads.append(PolicyFileLoad(path.name, rules, cube_rules))
    return loads


def cube_matches(pattern: str, cube: str) -> bool:
    if cube.startswith(PRIVATE_CUBE_PREFIX) and not pattern.startswith(PRIVATE_CUBE_PREFIX):
        return False
    return fnmatch.fnmatchcase(cube, pattern)


def rule_applies(rule: Rule, cube: str, agent: str, groups: Iterable[str]) -> bool:
    if not any(cube_matches(pattern, cube) for pattern in rule.cubes):
        return False
    return EVERYONE in rule.agents or agent in rule.agents or not set(rule.groups).isdisjoint(groups)


def grant_applies(grant: Grant, agent: str, groups: Iterable[str]) -> bool:
    if grant.grantee == EVERYONE or grant.grantee == agent:
        return True
    return grant.grantee.startswith("group:") and grant.grantee[6:] in set(groups)


def effective_level(
    *,
    cube: str,
    owner: str,
    agent: str,
    groups: Sequence[str],
    rules: Sequence[SourcedRule],
    grants: Sequence[Grant],
) -> int:
    """The agent's permission level on the cube: 0 (none) to 4 (admin)."""
    if owner == agent:
        return ADMIN
    allowed, cap = NONE, ADMIN
    for sourced in rules:
        rule = sourced.rule
        if rule_applies(rule, cube, agent, groups):
            if rule.effect == "allow":
                allowed = max(allowed, LEVEL[rule.permission])
            else:
                cap = min(cap, LEVEL[rule.permission] - 1)
    for grant in grants:
        if grant_applies(grant, agent, groups):
            allowed = max(allowed, LEVEL[grant.permission])
    return min(allowed, cap)
