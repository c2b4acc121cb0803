"""Realistic generated memories: varied sentences about people, projects and decisions, seeded and repeatable."""

from __future__ import annotations

import random

PEOPLE = [
    "Alice",
    "Bob",
    "Carol",
    "Dmitri",
    "Elena",
    "Farah",
    "Gustavo",
    "Hana",
    "Ivan",
    "Julia",
    "Kenji",
    "Laila",
    "Mateo",
    "Nadia",
    "Omar",
    "Priya",
    "Quentin",
    "Rosa",
    "Samir",
    "Tomas",
    "Uma",
    "Viktor",
    "Wen",
    "Xenia",
    "Yusuf",
    "Zoe",
]
PROJECTS = [
    "atlas",
    "borealis",
    "cobalt",
    "delta",
    "ember",
    "falcon",
    "granite",
    "harbor",
    "iris",
    "juniper",
    "kepler",
    "lumen",
    "meridian",
    "nova",
    "orion",
    "pulsar",
    "quartz",
    "raven",
    "sierra",
    "tundra",
]
SYSTEMS = """billing service, search index, CI pipeline, mobile app, data warehouse, auth gateway, payments API,
recommendation model, staging cluster, feature-flag service, email worker, analytics dashboard, docs site,
inventory database, customer portal""".replace("\n", " ").split(", ")
TECH = """PostgreSQL, SQLite, Redis, Kafka, Kubernetes, Terraform, Rust, Go, TypeScript, React, gRPC, GraphQL,
ClickHouse, DuckDB, S3, Nginx, Envoy, OpenTelemetry, Prometheus, Grafana""".replace("\n", " ").split(", ")
FOODS = [
    "green tea",
    "espresso",
    "oat milk latte",
    "sparkling water",
    "jasmine tea",
    "matcha",
    "cold brew",
    "hot chocolate",
]
HOBBIES = [
    "climbing",
    "chess",
    "sourdough baking",
    "trail running",
    "woodworking",
    "birdwatching",
    "jazz piano",
    "sailing",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]

TEMPLATES = [
    "{p} decided to migrate the {s} of project {j} to {t} before the {m} release.",
    "{p} prefers {f} in the morning and dislikes meetings before 10am.",
    "The {s} for {j} failed on {d} because the {t} connection pool was exhausted; {p} raised the limit.",
    "Project {j} uses {t} for the {s}; {p} owns it and reviews every change.",
    "{p} asked that all {j} design documents be written in plain English with a one-paragraph summary.",
    "Retrospective for {j}: the {s} rollout slipped two weeks; next time {p} will stage it behind a flag.",
    "{p} spends weekends on {h} and is learning {t} in the evenings.",
    "To deploy the {s} of {j}: run the {t} migration, then restart the workers one at a time ({p}'s runbook).",
    "{p} and {q} agreed on {d} to replace {t} with {u} in the {s} by the end of {m}.",
    "Incident on {d}: the {s} returned stale data for 40 minutes; root cause was a {t} cache that {p} misconfigured.",
    "{p}'s team meets every {d} at 9:30 to review the {j} roadmap.",
    "The {s} latency budget for {j} is 200 ms at p99, measured in {t}.",
    "{p} mentioned their sister lives in Lisbon and they visit her every {m}.",
    "Decision: {j} will keep {t} for the {s}; {q} argued for {u} but the migration cost was too high.",
    "{p} is allergic to peanuts; order lunch for the {j} offsite accordingly.",
]


def memories(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        template = rng.choice(TEMPLATES)
        p, q = rng.sample(PEOPLE, 2)
        t, u = rng.sample(TECH, 2)
        text = template.format(
            p=p,
            q=q,
            t=t,
            u=u,
            s=rng.choice(SYSTEMS),
            j=rng.choice(PROJECTS),
            f=rng.choice(FOODS),
            h=rng.choice(HOBBIES),
            d=rng.choice(DAYS),
            m=rng.choice(MONTHS),
        )
        out.append(f"{text} (note {i})")
    return out


QUESTIONS = [
    "what does {p} like to drink",
    "which database does project {j} use",
    "why did the {s} fail",
    "who owns the {s}",
    "how do we deploy the {s}",
    "what did the team decide about {t}",
    "when does {p}'s team meet",
    "what are {p}'s hobbies",
    "latency budget for {j}",
    "food allergies for the offsite",
]


def queries(count: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    return [
        rng.choice(QUESTIONS).format(
            p=rng.choice(PEOPLE), j=rng.choice(PROJECTS), s=rng.choice(SYSTEMS), t=rng.choice(TECH)
        )
        for _ in range(count)
    ]


# A second corpus whose questions share many words with many memories: short notes about people and the
# systems they work on, and questions such as "What did Lena decide about the billing service?". Every
# question's words ("decide", "billing", "service", a name) each match thousands of notes at 100k, so the
# lexical side ranks a large share of the collection, as in a heavy user's memory.
NOTE_PEOPLE = [*PEOPLE, "Lena", "Marek", "Ines", "Jonas", "Sofia", "Pavel", "Amara", "Chen"]
NOTE_TEMPLATES = [
    "{p} decided to move the {s} to {t}.",
    "{p} said the {s} needs a review before {d}.",
    "{p} and {q} discussed the {s} and decided to wait until {m}.",
    "{p} thinks the {s} is too slow; {q} disagrees.",
    "{p} asked {q} about the {s} deadline.",
    "{p} will own the {s} from {m}.",
    "The {s} broke again on {d}; {p} decided to roll back.",
    "{p} wants the {s} documented before the {j} launch.",
    "{q} reviewed {p}'s change to the {s}.",
    "{p} decided against {t} for the {s}.",
]
NOTE_QUESTIONS = [
    "What did {p} decide about the {s}?",
    "Who owns the {s} now?",
    "What does {p} think about the {s}?",
    "When did the {s} break and what did {p} do?",
    "What did {p} ask {q} about the {s}?",
    "Which database did {p} decide on for the {s}?",
]


def notes(count: int, seed: int = 13) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        p, q = rng.sample(NOTE_PEOPLE, 2)
        text = rng.choice(NOTE_TEMPLATES).format(
            p=p,
            q=q,
            s=rng.choice(SYSTEMS),
            t=rng.choice(TECH),
            j=rng.choice(PROJECTS),
            d=rng.choice(DAYS),
            m=rng.choice(MONTHS),
        )
        out.append(f"{text} (#{i})")
    return out


def note_queries(count: int, seed: int = 17) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        p, q = rng.sample(NOTE_PEOPLE, 2)
        out.append(rng.choice(NOTE_QUESTIONS).format(p=p, q=q, s=rng.choice(SYSTEMS)))
    return out


# name -> (memories, questions, what it is): the corpora bench/load.py runs.
CORPORA = {
    "varied": (memories, queries, "varied sentences about people, projects and decisions"),
    "many-matches": (notes, note_queries, "short notes whose questions share many words with many memories"),
}
