"""The task tools: hand work to another agent with its context prepared, and pick up what was handed to you."""

from typing import Annotated, Literal

from mcp.server.mcpserver.tools import Tool
from pydantic import Field

from daemon import ContextPack, Services, Task, TaskPage
from mcp_server.arguments import KeyArg
from mcp_server.auth import current_agent
from mcp_server.wire import ADDITIVE, ADDITIVE_IDEMPOTENT, READ_ONLY, make_tool

TaskIdArg = Annotated[
    str, Field(description="A task id such as task_0123456789abcdef (task_list shows yours).")
]


def build_task_tools(services: Services) -> list[Tool]:

    async def task_handoff(
        to_agent: Annotated[str, Field(description="The agent that should do the task.")],
        title: Annotated[str, Field(description="What to do, in a line.")],
        description: Annotated[str, Field(description="Details, constraints, what done looks like.")] = "",
        cubes: Annotated[
            list[str] | None,
            Field(
                description="Cubes whose memories matter for the task (you must be able to read them); omit: all "
                "the receiver may read."
            ),
        ] = None,
        notes: Annotated[
            str | None, Field(description="Your notes for the receiver: what you tried, where to look.")
        ] = None,
        priority: Annotated[Literal["low", "normal", "high"], Field(description="How urgent.")] = "normal",
        idempotency_key: KeyArg = None,
    ) -> Task:
        """Hand a task to another agent. memos prepares its context at once (relevant memories it may read, its
        preferences, your notes), so it can start without searching. Returns the task with its id."""
        agent = current_agent()
        arguments = [to_agent, title, description, cubes, notes, priority]
        return await services.idempotent(
            agent, idempotency_key, "task_handoff", arguments, Task,
            lambda rec: services.tasks.handoff(agent, to_agent, title, description, cubes, notes, priority, recorder=rec),
        )  # fmt: skip

    async def task_list(
        status: Annotated[
            Literal["pending", "accepted", "done", "cancelled"] | None, Field(description="Only this status.")
        ] = None,
        role: Annotated[
            Literal["to", "from"] | None, Field(description="'to': handed to you; 'from': handed by you.")
        ] = None,
    ) -> TaskPage:
        """Tasks handed to you or by you, newest first. Check it at the start of a session."""
        return await services.tasks.list(current_agent(), status, role)

    async def task_accept(task_id: TaskIdArg, idempotency_key: KeyArg = None) -> Task:
        """Accept a task handed to you (it becomes your current task), then read its context with context_get."""
        agent = current_agent()
        return await services.idempotent(
            agent, idempotency_key, "task_accept", [task_id], Task,
            lambda rec: services.tasks.accept(agent, task_id, recorder=rec),
        )  # fmt: skip

    async def task_update(
        task_id: TaskIdArg,
        status: Annotated[
            Literal["accepted", "done", "cancelled"] | None,
            Field(description="done when finished; cancelled to call it off."),
        ] = None,
        notes: Annotated[
            str | None, Field(description="A note for the other agent: progress, results, questions.")
        ] = None,
        idempotency_key: KeyArg = None,
    ) -> Task:
        """Report on a task: add a note, mark it done, or cancel it."""
        agent = current_agent()
        return await services.idempotent(
            agent, idempotency_key, "task_update", [task_id, status, notes], Task,
            lambda rec: services.tasks.update(agent, task_id, status, notes, recorder=rec),
        )  # fmt: skip

    async def context_get(task_id: TaskIdArg) -> ContextPack:
        """The context prepared for a task: its notes, your preferences, the task's history and the memories
        most relevant to it that you may read, as markdown and as items. Read it before starting the task."""
        return await services.packs.get(current_agent(), task_id)

    return [
        make_tool(task_handoff, Task, ADDITIVE),
        make_tool(task_list, TaskPage, READ_ONLY),
        make_tool(task_accept, Task, ADDITIVE_IDEMPOTENT),
        make_tool(task_update, Task, ADDITIVE),
        make_tool(context_get, ContextPack, READ_ONLY),
    ]
