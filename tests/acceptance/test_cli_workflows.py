"""The `fsjobs` command line on dependencies and workflows: push --depends-on, show's graph,
workflows, ls --status blocked, and the errors of a retry that cannot be."""

from __future__ import annotations

import asyncio
import json
import pathlib
import re

import fsjobs
from fsjobs import Job, Workflow

from .test_cli import cli_env
from .test_cli import fsjobs as run

__all__ = ["cli_env"]  # the fixture, shared with test_cli


def push_report(root: pathlib.Path) -> str:
    async def push() -> str:
        queue = fsjobs.Queue(root)
        wf = (
            Workflow("report")
            .add("fetch", Job(func="clitasks.add", kwargs={"a": 1, "b": 2}))
            .add("parse", Job(func="clitasks.add", kwargs={"a": 3, "b": 4}), after=["fetch"])
            .add("chart", Job(func="clitasks.add", kwargs={"a": 5, "b": 6}), after=["parse"])
            .add(
                "mail", Job(func="clitasks.add", kwargs={"a": 7, "b": 8}), after=["parse", "chart"]
            )
        )
        return await queue.push_workflow(wf)

    return asyncio.run(push())


def test_show_draws_the_graph_and_workflows_lists_them(
    root: pathlib.Path, cli_env: dict[str, str]
) -> None:
    wf_id = push_report(root)
    listed = run(root, "workflows", env=cli_env)
    assert listed.returncode == 0, listed.stderr
    assert re.fullmatch(rf"{wf_id}  report +running +0/4 completed\n", listed.stdout)

    graph = run(root, "show", wf_id, env=cli_env)
    assert graph.returncode == 0, graph.stderr
    lines = graph.stdout.splitlines()
    assert lines[0] == f"workflow {wf_id} report: running"
    assert re.fullmatch(r"   fetch +pending +\w{22}", lines[1])
    assert re.fullmatch(r"     └─ parse +blocked +\w{22}  after fetch", lines[2])
    assert re.fullmatch(r"       └─ chart +blocked +\w{22}  after parse", lines[3])
    assert re.fullmatch(r"         └─ mail +blocked +\w{22}  after parse, chart", lines[4])

    blocked = json.loads(run(root, "ls", "--status", "blocked", "--json", env=cli_env).stdout)
    assert sorted(s["step"] for s in blocked) == ["chart", "mail", "parse"]
    mail = next(s for s in blocked if s["step"] == "mail")
    assert mail["workflow"] == wf_id and len(mail["depends_on"]) == 2
    shown = run(root, "show", mail["id"], env=cli_env).stdout
    assert re.search(r"^ \*\s+└─ mail +blocked", shown, re.MULTILINE), shown
    assert "blocked=3" in run(root, "stats", env=cli_env).stdout

    worked = run(root, "worker", "clitasks", "--until-empty", env=cli_env)
    assert worked.returncode == 0, worked.stderr
    state = json.loads(run(root, "show", wf_id, "--json", env=cli_env).stdout)
    assert state["status"] == "completed"
    assert {name: s["result"] for name, s in state["steps"].items()} == {
        "fetch": 3,
        "parse": 7,
        "chart": 11,
        "mail": 15,
    }
    assert json.loads(run(root, "workflows", "--json", env=cli_env).stdout)[0]["id"] == wf_id


def test_push_depends_on_cancel_cascades_and_retry_refuses(
    root: pathlib.Path, cli_env: dict[str, str]
) -> None:
    parent = run(root, "push", "clitasks.add", "--kwargs", '{"a": 1, "b": 1}', env=cli_env)
    parent_id = parent.stdout.strip()
    child = run(root, "push", "clitasks.add", "--depends-on", parent_id, env=cli_env)
    assert child.returncode == 0, child.stderr
    child_id = child.stdout.strip()
    shown = run(root, "show", child_id, env=cli_env).stdout
    assert re.search(r"^ +status: blocked$", shown, re.MULTILINE)
    assert re.search(rf"^ +depends on: {parent_id} \(pending\)$", shown, re.MULTILINE)
    shown = run(root, "show", parent_id, env=cli_env).stdout
    assert re.search(rf"^ +dependents: {child_id} \(blocked\)$", shown, re.MULTILINE)

    cancelled = run(root, "cancel", parent_id, env=cli_env)
    assert (cancelled.returncode, cancelled.stdout) == (0, f"{parent_id}: cancelled\n")
    child_state = json.loads(run(root, "show", child_id, "--json", env=cli_env).stdout)
    assert child_state["status"] == "cancelled"
    assert child_state["error"]["type"] == "fsjobs.errors.DependencyFailed"

    refused = run(root, "retry", child_id, env=cli_env)
    assert refused.returncode == 1
    assert refused.stderr == (
        f"fsjobs: job {child_id} was not retried: parent {parent_id} is cancelled; "
        "a job runs only once every job it depends on has completed\n"
    )
    missing = run(root, "push", "clitasks.add", "--depends-on", "0" * 22, env=cli_env)
    assert missing.returncode == 3
    assert missing.stderr.startswith("fsjobs: a job cannot depend on '0000000000000000000000'")
    unknown = run(root, "show", "1" * 22, env=cli_env)
    assert (unknown.returncode, unknown.stderr) == (
        3,
        f"fsjobs: no job or workflow {'1' * 22!r}\n",
    )
