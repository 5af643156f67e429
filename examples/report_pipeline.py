"""
A report pipeline as a workflow: one step fans out to two, which fan back in to one.

    python examples/report_pipeline.py [ROOT]

``fetch`` gets the sales figures; ``chart`` and ``totals`` both start once it has
completed (a fan-out) and read its result in ``ctx.parents["fetch"]``; ``mail`` waits for
both (a fan-in). The workflow is pushed all or nothing, and ``get_workflow`` shows each
step's status. A job outside the workflow can wait for a step too (``Job.depends_on``).
A second run whose ``fetch`` fails shows the steps after it cancelled, not run.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile

import fsjobs
from fsjobs import Context


async def main(root: str) -> None:
    queue = fsjobs.Queue(root)

    @queue.task(name="examples.report_pipeline.fetch")
    async def fetch(month: str) -> list[dict[str, object]]:
        if month == "never":
            raise ConnectionError("the sales server is down")
        return [
            {"region": "north", "sales": 120},
            {"region": "south", "sales": 80},
            {"region": "west", "sales": 45},
        ]

    @queue.task(name="examples.report_pipeline.chart")
    def chart(ctx: Context) -> str:
        rows = ctx.parents["fetch"]
        lines = [f"{r['region']:>6} {'#' * (r['sales'] // 10)}" for r in rows]
        (ctx.output_dir / "chart.txt").write_text("\n".join(lines) + "\n")
        return "chart.txt"

    @queue.task(name="examples.report_pipeline.totals")
    def totals(ctx: Context) -> dict[str, int]:
        rows = ctx.parents["fetch"]
        return {"regions": len(rows), "sales": sum(r["sales"] for r in rows)}

    @queue.task(name="examples.report_pipeline.mail")
    def mail(ctx: Context, to: str) -> str:
        summary, attachment = ctx.parents["totals"], ctx.parents["chart"]
        return f"to {to}: {summary['sales']} sold in {summary['regions']} regions, see {attachment}"

    def pipeline(month: str) -> fsjobs.Workflow:
        return (
            fsjobs.Workflow("monthly-report")
            .add("fetch", fetch.job(month=month))
            .add("chart", chart.job(), after=["fetch"])
            .add("totals", totals.job(), after=["fetch"])
            .add("mail", mail.job(to="boss@example.com"), after=["chart", "totals"])
        )

    wf_id = await queue.push_workflow(pipeline("2026-11"))
    state = await queue.get_workflow(wf_id)
    print(
        f"pushed {state.name}: "
        + ", ".join(f"{n} {s.status.value}" for n, s in state.steps.items())
    )

    # Another job may wait for a step: its parents are then keyed by job id.
    @queue.task(name="examples.report_pipeline.archive")
    def archive(ctx: Context) -> str:
        (sent,) = ctx.parents.values()
        return f"archived: {sent}"

    archived = await queue.push(archive.job().with_depends_on([state.steps["mail"].id]))
    print(f"archive job: {(await queue.get(archived)).status.value}")

    ran = await fsjobs.Worker(queue).run_until_empty()
    state = await queue.get_workflow(wf_id)
    print(f"ran {ran} jobs; workflow {state.status.value}")
    print(f"mail: {state.steps['mail'].result}")
    chart_file = await queue.read_output(state.steps["chart"].id, "chart.txt")
    print("chart.txt:\n" + chart_file.decode().rstrip())
    print(await queue.result(archived))

    # A failure upstream cancels what depends on it, with the reason.
    failed = await queue.push_workflow(pipeline("never"))
    await fsjobs.Worker(queue).run_until_empty()
    state = await queue.get_workflow(failed)
    print(f"second run: workflow {state.status.value}")
    for name, step in state.steps.items():
        why = f" ({step.error.type}: {step.error.message})" if step.error else ""
        print(f"  {name}: {step.status.value}{why}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="fsjobs-pipeline-") as tmp:
            asyncio.run(main(tmp))
