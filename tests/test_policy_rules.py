"""Policy rules: the file format's errors, and evaluation properties that must hold for any rule set."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon import ConfigError
from daemon.policy_rules import (
    ADMIN,
    LEVEL,
    PERMISSIONS,
    Grant,
    Rule,
    SourcedRule,
    cube_matches,
    effective_level,
    parse_policy,
)


def level(rules: list[Rule], agent: str = "bob", cube: str = "team-x", groups=(), grants=()) -> int:  # type: ignore[no-untyped-def]
    sourced = [SourcedRule(rule, f"t rule {i}") for i, rule in enumerate(rules)]
    return effective_level(cube=cube, owner="alice", agent=agent, groups=groups, rules=sourced, grants=grants)


def test_default_deny_and_owner_admin() -> None:
    assert level([]) == 0
    assert level([], agent="alice") == ADMIN


def test_permissions_are_levels_each_including_the_ones_before() -> None:
    for name in PERMISSIONS:
        assert level([Rule(cubes=["team-*"], agents=["bob"], permission=name)]) == LEVEL[name]


def test_a_deny_beats_an_allow_and_caps_above_it() -> None:
    allow = Rule(cubes=["team-*"], agents=["*"], permission="admin")
    assert level([allow, Rule(cubes=["team-x"], agents=["bob"], permission="write", effect="deny")]) == 1
    assert (
        level([allow, Rule(cubes=["*"], groups=["ops"], permission="read", effect="deny")], groups=["ops"])
        == 0
    )
    assert level([allow], grants=[Grant("bob", "admin")]) == ADMIN
    denied = Rule(cubes=["team-x"], agents=["bob"], permission="read", effect="deny")
    assert level([denied], grants=[Grant("bob", "admin")]) == 0


def test_a_deny_never_takes_an_owners_cube_away() -> None:
    assert level([Rule(cubes=["*"], agents=["*"], permission="read", effect="deny")], agent="alice") == ADMIN


def test_groups_and_grants_apply_to_their_members() -> None:
    rule = Rule(cubes=["team-x"], groups=["research"], permission="read")
    assert level([rule], groups=["research"]) == 1
    assert level([rule], groups=["ops"]) == 0
    assert level([], groups=["ops"], grants=[Grant("group:ops", "write")]) == 2
    assert level([], grants=[Grant("*", "read")]) == 1


def test_globs_reach_private_cubes_only_when_they_say_so() -> None:
    assert not cube_matches("*", "@alice")
    assert cube_matches("@*", "@alice")
    assert cube_matches("team-?", "team-x") and not cube_matches("team-?", "team-xy")


PERMISSION = st.sampled_from(PERMISSIONS)
NAMES = st.sampled_from(["bob", "carol", "*"])
RULES = st.builds(
    Rule,
    cubes=st.lists(st.sampled_from(["team-x", "team-*", "*", "other"]), min_size=1, max_size=2),
    agents=st.lists(NAMES, min_size=1, max_size=2),
    permission=PERMISSION,
    effect=st.sampled_from(["allow", "deny"]),
)


@given(st.lists(RULES, max_size=6), RULES)
def test_an_extra_allow_never_lowers_and_an_extra_deny_never_raises(rules: list[Rule], extra: Rule) -> None:
    before, after = level(rules), level([*rules, extra])
    assert after >= before if extra.effect == "allow" else after <= before


@given(st.lists(RULES, max_size=6))
def test_rule_order_does_not_matter(rules: list[Rule]) -> None:
    assert level(rules) == level(list(reversed(rules)))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[rule]\n", "p.toml: not valid TOML"),
        (
            '[[rule]]\ncubes = ["x"]\nagents = ["a"]\npermission = "write"\n\n[[rule]]\ncubes = ["y"]\n'
            'agents = ["b"]\npermission = "own"\n',
            "p.toml: rule 2, line 6: permission: Invalid enum value 'own'",
        ),
        ('[[rule]]\ncubes = ["x"]\npermission = "read"\n', "p.toml: rule 1, line 1: name at least one agent"),
        (
            '[[rule]]\ncubes = []\nagents = ["a"]\npermission = "read"\n',
            "p.toml: rule 1, line 1: cubes is empty",
        ),
        (
            '[[rule]]\ncubes = ["../etc"]\nagents = ["a"]\npermission = "read"\n',
            "p.toml: rule 1, line 1: cubes: '../etc' is not a cube name or glob",
        ),
        (
            '[[rule]]\ncubes = ["x"]\nagents = ["a"]\npermission = "read"\nwho = "me"\n',
            "p.toml: rule 1, line 1: the rule: Object contains unknown field `who`",
        ),
        (
            "[rules]\nx = 1\n",
            "p.toml: Object contains unknown field `rules` (a policy file holds [[rule]] and [[cube]] tables)",
        ),
    ],
)
def test_a_bad_policy_file_names_file_rule_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_policy(text, "p.toml")
    assert str(caught.value).startswith(message)


def test_the_shipped_examples_parse() -> None:
    from pathlib import Path

    policies = Path(__file__).resolve().parents[1] / "policies"
    assert parse_policy((policies / "private.toml").read_text(), "private.toml") == []
    assert len(parse_policy((policies / "team.toml.example").read_text(), "team.toml")) == 4
