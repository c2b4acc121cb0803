"""The retrieval pipeline: conversation turns found with their neighbours and episodes, time expressions
resolved against the query's reference time, several phrasings fused, and results that say why they matched."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import msgspec
import pytest

from daemon import InvalidInput, NewMemory, SearchQuery, Services, agent_named, open_services
from daemon.lexical import exact_query
from daemon.speaker import asked_about, without_speaker_names
from daemon.temporal import resolve
from tests.conftest import BOTH, make_config

pytestmark = pytest.mark.anyio
BACKENDS = BOTH


@pytest.fixture
async def conversational(tmp_path: Path, model_dir: Path) -> AsyncIterator[Services]:
    """The daemon core with the conversation stages on (they are off by default: see bench/README.md)."""
    config = make_config(tmp_path, str(model_dir))
    blend = msgspec.structs.replace(config.search.blend, context=4.0, episode=2.0, exact=2.0)
    search = msgspec.structs.replace(config.search, blend=blend)
    async with open_services(msgspec.structs.replace(config, search=search)) as core:
        await core.vectors.attached.wait()
        yield core


JACKET_SESSION = [
    ("user", "I'm choosing a winter jacket online: the navy parka or the red puffer, which would you pick?"),
    ("assistant", "Both are warm; the navy parka is longer and more versatile, the red one is lighter."),
    ("user", "Yes, the blue one then. I ordered it an hour ago."),
    ("assistant", "Good choice! It should keep you warm through the winter."),
]
OTHER_SESSIONS = [
    [
        ("user", "Can you suggest a pasta recipe with mushrooms?"),
        ("assistant", "Try a creamy mushroom tagliatelle."),
    ],
    [
        ("user", "How do I fix a flat bicycle tyre?"),
        ("assistant", "Remove the wheel, find the puncture, patch it."),
    ],
    [
        ("user", "What is a good stretch for lower back pain?"),
        ("assistant", "Try the cat-cow stretch daily."),
    ],
]


def turns(session: str, entries: list[tuple[str, str]], day: str) -> list[NewMemory]:
    return [
        NewMemory(
            content=text,
            kind="message",
            occurred_at=f"{day}T10:{index:02d}:00Z",
            metadata={"session": session, "turn": index, "role": role},
        )
        for index, (role, text) in enumerate(entries)
    ]


async def _conversations(services: Services):  # type: ignore[no-untyped-def]
    await services.identities.add("alice")
    alice = agent_named("alice")
    items = turns("jacket", JACKET_SESSION, "2023-06-17")
    for number, session in enumerate(OTHER_SESSIONS):
        items += turns(f"other-{number}", session, f"2023-05-0{number + 1}")
    await services.additions.add_batch(alice, None, items)
    return alice


async def test_a_turn_is_found_with_the_neighbours_it_answers(conversational: Services) -> None:
    services = conversational
    alice = await _conversations(services)
    result = await services.search.search(
        alice, SearchQuery(query="which jacket colour did I order", k=3, context_window=1)
    )
    top = result.results[0]
    assert top.metadata["session"] == "jacket"
    assert top.match.episode == "jacket"
    assert top.match.context_rank is not None
    confirmed = next(hit for hit in result.results if hit.content.startswith("Yes, the blue one"))
    assert [turn.offset for turn in confirmed.context] == [-1, 1]
    assert confirmed.context[0].content.startswith("Both are warm")


async def test_a_time_the_query_names_lifts_memories_from_then(services: Services) -> None:
    await services.identities.add("bob")
    bob = agent_named("bob")
    await services.additions.add_batch(
        bob,
        None,
        [
            NewMemory(
                content="Went hiking with Sam at Mount Tamalpais",
                kind="event",
                occurred_at="2023-05-06T09:00:00Z",
            ),
            NewMemory(
                content="Went hiking with Sam at Point Reyes",
                kind="event",
                occurred_at="2023-06-17T09:00:00Z",
            ),
        ],
    )
    result = await services.search.search(
        bob, SearchQuery(query="where did I go hiking last weekend", reference_time="2023-06-23T08:00:00Z")
    )
    assert result.time_window is not None and result.time_window.expression == "last weekend"
    assert result.results[0].content.endswith("Point Reyes")
    assert result.results[0].match.in_time_window
    assert not result.results[1].match.in_time_window


async def test_several_phrasings_are_fused(lexical_services: Services) -> None:
    services = lexical_services
    await services.identities.add("carol")
    carol = agent_named("carol")
    await services.additions.add(carol, None, NewMemory(content="Carol's cat is called Miso", kind="fact"))
    alone = await services.search.search(carol, SearchQuery(query="name of my pet"))
    assert alone.results == []
    fused = await services.search.search(carol, SearchQuery(query="name of my pet", queries=["my cat"]))
    assert fused.results[0].content == "Carol's cat is called Miso"
    assert fused.results[0].match.terms == ["cat"]


async def test_a_memory_outside_any_episode_is_not_held_back(conversational: Services) -> None:
    services = conversational
    alice = await _conversations(services)
    await services.additions.add(
        alice, None, NewMemory(content="Alice's winter jacket is a navy parka", kind="fact")
    )
    result = await services.search.search(alice, SearchQuery(query="what winter jacket does Alice have", k=3))
    assert result.results[0].content == "Alice's winter jacket is a navy parka"
    assert result.results[0].match.episode is None


PET_SESSION = [
    ("user", "We adopted a rescue greyhound named Pixel last month."),
    (
        "assistant",
        "Congratulations on adopting a dog! Greyhounds love short sprints; adopting a dog is a big step.",
    ),
]


async def _speaker_order(services: Services, query: str) -> list[str]:
    await services.identities.add("erin")
    erin = agent_named("erin")
    if not (await services.search.search(erin, SearchQuery(query="greyhound"))).results:
        await services.additions.add_batch(erin, None, turns("pets", PET_SESSION, "2023-07-01"))
    result = await services.search.search(erin, SearchQuery(query=query, k=2))
    return [hit.metadata["role"] for hit in result.results]


async def test_a_question_about_the_user_prefers_the_users_own_words(services: Services) -> None:
    assert await _speaker_order(services, "what dog did we adopt") == ["user", "assistant"]


async def test_a_question_about_what_the_assistant_said_prefers_its_turns(services: Services) -> None:
    assert await _speaker_order(services, "remind me what you said about adopting a dog") == [
        "assistant",
        "user",
    ]


async def test_only_conversation_turns_are_held_back_by_speaker(services: Services) -> None:
    await services.identities.add("gus")
    gus = agent_named("gus")
    note = NewMemory(content="Adopting a dog: Pixel the greyhound joined us", metadata={"role": "assistant"})
    await services.additions.add(gus, None, note)
    result = await services.search.search(gus, SearchQuery(query="what dog did we adopt"))
    assert result.results[0].match.signals["speaker"] == 1.0


async def test_without_the_speaker_signal_the_better_match_wins(tmp_path: Path, model_dir: Path) -> None:
    config = make_config(tmp_path, str(model_dir))
    search = msgspec.structs.replace(
        config.search, blend=msgspec.structs.replace(config.search.blend, speaker=0.0)
    )
    async with open_services(msgspec.structs.replace(config, search=search)) as core:
        await core.vectors.attached.wait()
        assert await _speaker_order(core, "what dog did we adopt") == ["assistant", "user"]


NAMED_SESSION = [  # a conversation between two named people: each says the other's name, never their own
    ("Caroline", "Thanks, Melanie! Melanie, your paintings are wonderful, Melanie."),
    ("Melanie", "Last weekend I painted a horse by the lake."),
    ("Caroline", "How was your week? I went hiking with friends."),
]


async def _named_speakers(services: Services, query: str) -> list[str]:
    """The speakers of the top two turns for `query` over NAMED_SESSION."""
    await services.identities.add("fay")
    fay = agent_named("fay")
    items = [
        NewMemory(
            content=text,
            kind="message",
            occurred_at=f"2023-05-08T13:{index:02d}:00Z",
            metadata={"speaker": speaker, "session": "session_1", "turn": index},
        )
        for index, (speaker, text) in enumerate(NAMED_SESSION)
    ]
    await services.additions.add_batch(fay, None, items)
    result = await services.search.search(fay, SearchQuery(query=query, k=2))
    return [hit.metadata["speaker"] for hit in result.results]


async def test_a_question_naming_a_speaker_is_searched_without_the_name(services: Services) -> None:
    """Her name is in the other's greetings, not in her own turns: searched with it, those come first."""
    assert (await _named_speakers(services, "What has Melanie painted?"))[0] == "Melanie"


async def test_with_drop_named_speaker_off_the_name_is_searched_too(tmp_path: Path, model_dir: Path) -> None:
    config = make_config(tmp_path, str(model_dir))
    search = msgspec.structs.replace(config.search, drop_named_speaker=False)
    async with open_services(msgspec.structs.replace(config, search=search)) as core:
        await core.vectors.attached.wait()
        assert (await _named_speakers(core, "What has Melanie painted?"))[0] == "Caroline"


@pytest.mark.parametrize(
    ("texts", "unnamed"),
    [
        (["What has Melanie painted?"], ["What has painted?"]),
        (["What is Melanie's job?", "Melanie work"], ["What is their job?", "work"]),
        (["When did John Smith move?"], ["When did move?"]),
        (["What do Melanie and Caroline both like?"], ["What do and both like?"]),
        (["What did Bob paint?"], None),  # not a speaker
    ],
)
def test_the_speakers_named_are_left_out_of_the_phrasings(
    texts: list[str], unnamed: list[str] | None
) -> None:
    assert without_speaker_names(texts, ["Melanie", "Caroline", "John Smith"]) == unnamed


@pytest.mark.parametrize(
    ("text", "asks_about"),
    [
        ("What did you recommend for my sourdough?", "assistant"),
        ("Can you remind me of the restaurant in Cihampelas Walk?", "assistant"),
        ("In our previous chat you suggested some terms", "assistant"),
        ("Remind me what I said about my sister", "user"),
        ("Can you suggest accessories for my camera?", "user"),
        ("How many properties did I view?", "user"),
        ("Remind me when my dentist appointment is", "user"),
        ("In our last chat I mentioned my new job, what was it?", "user"),
        ("You've picked a hotel for me, which one was it?", "assistant"),
        ("What is the wifi password?", None),
    ],
)
def test_whose_words_a_question_is_after(text: str, asks_about: str | None) -> None:
    assert asked_about([text]) == asks_about


async def test_reciprocal_rank_fusion_can_be_chosen_instead_of_the_blend(tmp_path: Path) -> None:
    config = make_config(tmp_path, "none")
    search = msgspec.structs.replace(config.search, fusion="rrf")
    async with open_services(msgspec.structs.replace(config, search=search)) as core:
        await core.identities.add("fay")
        fay = agent_named("fay")
        await core.additions.add(fay, None, NewMemory(content="Fay keeps bees on the roof", kind="fact"))
        await core.additions.add(fay, None, NewMemory(content="Fay's roof needs new tiles", kind="fact"))
        result = await core.search.search(fay, SearchQuery(query="bees on the roof"))
        assert result.results[0].content == "Fay keeps bees on the roof"
        assert result.results[0].match.lexical_rank == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"reference_time": "next tuesday"}, "reference_time"),
        ({"context_window": 6}, "context_window"),
        ({"queries": ["a", "b", "c", "d", "e"]}, "queries"),
        ({"queries": ["!!!"]}, r"queries\[0\] has no words"),
    ],
)
async def test_bad_pipeline_arguments_are_refused_by_name(
    lexical_services: Services, arguments: dict, message: str
) -> None:
    await lexical_services.identities.add("dan")
    with pytest.raises(InvalidInput, match=message):
        await lexical_services.search.search(agent_named("dan"), SearchQuery(query="anything", **arguments))


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("what did I buy last Tuesday", "2023-06-20", "2023-06-21"),
        ("the trip in May", "2023-05-01", "2023-06-01"),
        ("dinner two weeks ago", "2023-06-06", "2023-06-13"),
        ("the concert on March 4th", "2023-03-04", "2023-03-05"),
        ("last month", "2023-05-01", "2023-06-01"),
        ("yesterday", "2023-06-22", "2023-06-23"),
    ],
)
def test_time_expressions_resolve_against_the_reference_time(text: str, start: str, end: str) -> None:
    window = resolve(text, datetime(2023, 6, 23, 7, 31, tzinfo=timezone.utc))  # a Friday
    assert window is not None
    assert (window.start[:10], window.end[:10]) == (start, end)


@pytest.mark.parametrize(
    ("text", "reference", "start", "end"),
    [
        ("since March", datetime(2023, 6, 23, tzinfo=timezone.utc), "2023-03-01", "2023-06-24"),
        ("February 29", datetime(2025, 3, 10, tzinfo=timezone.utc), "2024-02-29", "2024-03-01"),
        (
            "on March 4th, two weeks ago",
            datetime(2023, 6, 23, tzinfo=timezone.utc),
            "2023-03-04",
            "2023-03-05",
        ),
        # 21:00 on May 1st in UTC-5: "yesterday" is the asker's April 30th, 05:00 to 05:00 UTC
        (
            "yesterday",
            datetime(2024, 5, 1, 21, tzinfo=timezone(timedelta(hours=-5))),
            "2024-04-30T05",
            "2024-05-01T05",
        ),
    ],
)
def test_the_first_expression_counts_in_the_askers_own_days(
    text: str, reference: datetime, start: str, end: str
) -> None:
    window = resolve(text, reference)
    assert window is not None
    assert window.start.startswith(start) and window.end.startswith(end)


def test_exact_tokens_are_numbers_identifiers_and_names() -> None:
    assert exact_query("Did Rosa pay the 1,200 for v2.3.1?") == '"1 200" OR "v2 3 1" OR "Rosa"'
    assert exact_query("what did we decide") is None
    assert exact_query("x" * 4096 + "1") == f'"{"x" * 4096}1"'  # one long word, read in one pass


@pytest.mark.parametrize("text", ["Where do I keep my sneakers?", "I may go", "February 30th"])
def test_text_without_a_time_expression_has_no_window(text: str) -> None:
    assert resolve(text, datetime(2023, 6, 23, tzinfo=timezone.utc)) is None
