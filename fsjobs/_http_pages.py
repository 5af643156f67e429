"""
The dashboard: server-rendered pages at ``/`` and ``/ui/...``.

* ``/``: every queue with its counts per status (each a link to those jobs),
  whether it is paused (with a Pause or Resume button) and its caps, live
  workers, and the newest jobs.
* ``/ui/jobs?status=&queue=&cursor=``: jobs filtered by status and queue, a
  page at a time.
* ``/ui/jobs/{id}``: one job: its state, a progress bar kept live by the job's
  Server-Sent Events, kwargs, result or error, outputs, logs, its dependency
  graph (its workflow's steps, or its parents and dependents), history, and the
  actions its status allows (cancel, retry, hold, release), as forms that post
  to ``/ui/jobs/{id}/{action}`` with the CSRF token and come back here.

All text from jobs goes through `_http_html.esc`.
"""

from __future__ import annotations

import typing
import urllib.parse

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from . import _ids, _stats
from ._http_api import act, queue_act
from ._http_auth import request_csrf, signed_in_by_cookie
from ._http_base import Problem, Settings, job_id_of, root_path
from ._http_html import badge, esc, hidden_csrf, page, pretty, query, when
from ._text import printable
from .errors import FsJobsError, JobNotFound
from .model import converter, state_json
from .states import Event, JobState, JobStatus, WorkflowState

#: the columns of the queues table, in the order of a job's life
COLUMNS = (
    JobStatus.PENDING,
    JobStatus.SCHEDULED,
    JobStatus.RUNNING,
    JobStatus.RETRYING,
    JobStatus.HELD,
    JobStatus.BLOCKED,
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.TIMED_OUT,
    JobStatus.CANCELLED,
    JobStatus.CORRUPT,
)
PAGE_SIZE = 50
#: the most parents (and dependents) a job page lists
GRAPH_ROWS = 50
#: how long the dashboard's Cancel button waits for a running job to stop (the page shows the rest)
DASHBOARD_CANCEL_WAIT = 2.0
#: what each status allows, as (action, button label, button class)
ACTIONS: dict[str, tuple[str, str]] = {
    "cancel": ("Cancel", "danger"),
    "hold": ("Hold", ""),
    "release": ("Release", ""),
    "retry": ("Retry", ""),
}
#: fixed notes an action's redirect may ask the job page to show (no text from the request)
NOTES = {
    "unchanged": "Nothing changed: the job was not in a state that allows it.",
    "conflict": "Not retried: its unique key belongs to another unfinished job.",
    "running": "Cancel requested: the job stops when its worker sees the request.",
}


def allowed(state: JobState) -> list[str]:
    """The actions the dashboard offers for a job in this state."""
    status = state.status
    out = []
    if not status.is_final:
        out.append("cancel")
    if status in (JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.RETRYING):
        out.append("hold")
    if status is JobStatus.HELD:
        out.append("release")
    if status in (JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.CANCELLED):
        out.append("retry")
    return out


class Pages:
    """The dashboard's endpoints of one app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.queue = settings.queue

    def _page(self, request: Request, title: str, body: str, **kw: typing.Any) -> Response:
        return page(
            title,
            body,
            base=root_path(request),
            csrf=request_csrf(self.settings, request),
            signed_in=signed_in_by_cookie(self.settings, request),
            root=self.queue.root,
            **kw,
        )

    async def overview(self, request: Request) -> Response:
        base = root_path(request)
        csrf = request_csrf(self.settings, request)
        stats = await self.queue.io(_stats.collect, self.queue.store)
        head = "".join(f'<th class="n">{esc(s.value.replace("_", " "))}</th>' for s in COLUMNS)
        rows = []
        for name, info in stats.queues.items():
            cells = []
            for status in COLUMNS:
                n = info.counts.get(status, 0)
                link = query(f"{base}/ui/jobs", queue=name, status=status.value)
                cells.append(
                    f'<td class="n{" zero" if not n else ""}"><a href="{link}">{n}</a></td>'
                    if n
                    else '<td class="n zero">0</td>'
                )
            age = info.oldest_pending_s
            rows.append(
                f'<tr><td><a href="{query(f"{base}/ui/jobs", queue=name)}">{esc(name)}</a></td>'
                f"{''.join(cells)}"
                f'<td class="n">{"" if age is None else f"{age:.1f} s"}</td>'
                f"<td>{_flow_cell(base, name, info, csrf)}</td></tr>"
            )
        queues = (
            f'<table><tr><th>queue</th>{head}<th class="n">oldest pending</th>'
            f"<th>flow</th></tr>{''.join(rows)}</table>"
            if rows
            else '<p class="muted">No queue yet: nothing was pushed under this root.</p>'
        )
        recent = await self.queue.list_jobs(limit=15, queue="*")
        body = (
            "<h1>Queues</h1>"
            f'<div class="card">{queues}<p class="muted">Workers alive: '
            f"{stats.workers_alive}</p></div>"
            f"<h2>Newest jobs</h2>{_jobs_table(base, list(recent))}"
            f'<p><a href="{esc(base)}/ui/jobs">All jobs →</a></p>'
        )
        return self._page(request, "Queues", body)

    async def jobs(self, request: Request) -> Response:
        base = root_path(request)
        params = request.query_params
        status = params.get("status") or None
        if status is not None and status not in {s.value for s in JobStatus}:
            raise Problem(422, "invalid", f"unknown status {printable(status)!r}")
        queue = params.get("queue") or "*"
        names = await self.queue.io(self.queue.store.queues)
        if queue != "*" and queue not in names:
            names.append(queue)
        cursor = params.get("cursor") or None
        if cursor is not None and not _ids.is_job_id(cursor):
            raise Problem(422, "invalid", f"invalid cursor {printable(cursor)!r}")
        try:
            listed = await self.queue.list_jobs(status, PAGE_SIZE, queue=queue, cursor=cursor)
        except FsJobsError as exc:  # a queue name that is not one
            raise Problem(422, "invalid", printable(exc)) from exc
        status_opts = "".join(
            f'<option value="{esc(s.value)}"{" selected" if s.value == status else ""}>'
            f"{esc(s.value)}</option>"
            for s in JobStatus
        )
        queue_opts = "".join(
            f'<option value="{esc(n)}"{" selected" if n == queue else ""}>{esc(n)}</option>'
            for n in names
        )
        filters = (
            f'<form class="filters" method="get" action="{esc(base)}/ui/jobs">'
            f'<label>Status<select name="status"><option value="">any</option>{status_opts}'
            "</select></label>"
            f'<label>Queue<select name="queue"><option value="">all</option>{queue_opts}'
            '</select></label><button type="submit">Show</button></form>'
        )
        more = ""
        if listed.next_cursor is not None:
            link = query(
                f"{base}/ui/jobs",
                status=status,
                queue=None if queue == "*" else queue,
                cursor=listed.next_cursor,
            )
            more = f'<p><a href="{link}" rel="next">Older jobs →</a></p>'
        title = (
            "Jobs" + (f" · {status}" if status else "") + (f" · {queue}" if queue != "*" else "")
        )
        body = f"<h1>{esc(title)}</h1>{filters}{_jobs_table(base, list(listed))}{more}"
        return self._page(request, title, body)

    async def job(self, request: Request) -> Response:
        base = root_path(request)
        job_id = job_id_of(request)
        state = await self.queue.get(job_id)
        history = await self.queue.history(job_id)
        csrf = request_csrf(self.settings, request)
        note = NOTES.get(request.query_params.get("note", ""), "")
        graph = await self._graph(base, state)
        body = _job_body(base, state, history, csrf, note, graph)
        return self._page(
            request,
            f"{state.func} {job_id}",
            body,
            attrs={"data-events": f"{base}/jobs/{job_id}/events", "data-status": state.status},
        )

    async def _graph(self, base: str, state: JobState) -> str:
        """The job's dependency graph: its workflow's steps, or its parents and dependents."""
        if state.workflow is not None:
            try:
                return _workflow_card(base, await self.queue.get_workflow(state.workflow), state.id)
            except JobNotFound:
                return ""
        children = await self.queue.io(self.queue.store.dependents, state.id)
        rows = []
        for label, ids in (("depends on", state.depends_on), ("dependent", children)):
            for job_id in ids[:GRAPH_ROWS]:
                try:
                    status = (await self.queue.get(job_id)).status.value
                except JobNotFound:
                    status = "gone"
                rows.append((label, job_id, status))
        if not rows:
            return ""
        cells = "".join(
            f'<tr><td>{esc(label)}</td><td class="mono">{_job_link(base, job_id)}</td>'
            f"<td>{badge(status)}</td></tr>"
            for label, job_id, status in rows
        )
        return (
            '<h2>dependencies</h2><table id="graph"><tr><th></th><th>job</th><th>status</th></tr>'
            f"{cells}</table>"
        )

    async def action(self, request: Request) -> Response:
        """A dashboard button: the action, then back to the job's page (303)."""
        base = root_path(request)
        job_id = job_id_of(request)
        action = request.path_params["action"]
        before = await self.queue.get(job_id)
        note = ""
        try:
            after = await act(self.settings, request, action, cancel_wait=DASHBOARD_CANCEL_WAIT)
        except Problem as problem:
            if problem.status != 409:
                raise
            note = "conflict" if "unique key" in problem.message else "unchanged"
        else:
            if after.status is JobStatus.RUNNING and action == "cancel":
                note = "running"
            elif after == before:
                note = "unchanged"
        target = f"{base}/ui/jobs/{job_id}"
        if note:
            target += "?" + urllib.parse.urlencode({"note": note})
        return RedirectResponse(target, 303)

    async def queue_action(self, request: Request) -> Response:
        """A queue's Pause or Resume button: the action, then back to the overview (303)."""
        base = root_path(request)
        await queue_act(self.settings, request.path_params["queue"], request.path_params["action"])
        return RedirectResponse(f"{base}/", 303)


def _flow_cell(base: str, name: str, info: _stats.QueueStats, csrf: str | None) -> str:
    """Paused or not (with the button that changes it), its caps, or why it is not served."""
    flow = info.info
    action, label = ("resume", "Resume") if flow.paused else ("pause", "Pause")
    state = '<span class="badge paused">paused</span> ' if flow.paused else ""
    caps = " ".join(
        f"{key}={value}"
        for key, value in (("concurrency", flow.concurrency), ("rate", flow.rate))
        if value is not None
    )
    problem = ""
    if info.settings_problem:
        why = esc(info.settings_problem)
        problem = f' <span class="badge s-failed" title="{why}">settings unusable</span>'

    form = (
        f'<form class="inline" method="post" action="{esc(base)}/ui/queues/{esc(name)}/{action}">'
        f'{hidden_csrf(csrf)}<button type="submit" name="action" value="{action}">{label}'
        "</button></form>"
    )
    return f"{state}{esc(caps)}{problem} {form}"


def _jobs_table(base: str, states: list[JobState]) -> str:
    if not states:
        return '<p class="muted">No jobs.</p>'
    rows = []
    for s in states:
        data = state_json(s)
        progress = "" if s.progress is None else f"{s.progress:.0f}%"
        rows.append(
            f'<tr><td class="mono"><a href="{esc(base)}/ui/jobs/{esc(s.id)}">{esc(s.id)}</a></td>'
            f"<td>{esc(s.func)}</td><td>{esc(s.queue)}</td><td>{badge(s.status)}</td>"
            f'<td class="n">{s.attempts}/{s.max_attempts}</td><td class="n">{progress}</td>'
            f"<td>{when(data['created_at'])}</td></tr>"
        )
    return (
        "<table><tr><th>id</th><th>task</th><th>queue</th><th>status</th>"
        '<th class="n">attempts</th><th class="n">progress</th><th>created</th></tr>'
        f"{''.join(rows)}</table>"
    )


def _job_body(
    base: str, state: JobState, history: list[Event], csrf: str | None, note: str, graph: str
) -> str:
    data = state_json(state)
    pct = 0.0 if state.progress is None else max(0.0, min(100.0, state.progress))
    if state.status is JobStatus.COMPLETED:
        pct = 100.0
    queue_link = query(f"{base}/ui/jobs", queue=state.queue)
    details = [
        ("id", f'<span class="mono">{esc(state.id)}</span>'),
        ("task", esc(state.func)),
        ("queue", f'<a href="{queue_link}">{esc(state.queue)}</a>'),
        ("priority", esc(state.priority)),
        ("attempts", f'<span id="attempts">{state.attempts} of {state.max_attempts}</span>'),
        ("worker", f'<span id="worker">{esc(state.worker or "")}</span>'),
    ]
    for key in ("created_at", "scheduled_at", "ready_at", "started_at", "finished_at"):
        if data.get(key):
            details.append((key.replace("_at", "").replace("_", " "), when(data[key])))
    if state.duration is not None:
        details.append(("duration", f"{state.duration:.3f} s"))
    if state.unique_key is not None:
        details.append(("unique key", f'<span class="mono">{esc(state.unique_key)}</span>'))
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in details)
    buttons = "".join(
        f'<form method="post" action="{esc(base)}/ui/jobs/{esc(state.id)}/{name}">'
        f'{hidden_csrf(csrf)}<button type="submit" class="{ACTIONS[name][1]}" '
        f'name="action" value="{name}">{ACTIONS[name][0]}</button></form>'
        for name in allowed(state)
    )
    parts = [
        f'<p class="note" role="status">{esc(note)}</p>' if note else "",
        f'<h1>{esc(state.func)} <span id="status">{badge(state.status)}</span></h1>',
        f'<div class="actions">{buttons}</div>' if buttons else "",
        '<div class="grid"><div class="card">',
        f'<div class="bar" title="progress"><span id="bar" data-pct="{pct:.1f}"></span></div>',
        (
            f'<p><span id="progress">{"" if state.progress is None else f"{pct:.1f}%"}</span> '
            f'<span id="progress-message">{esc(state.progress_message or "")}</span></p>'
        ),
        f"<dl>{dl}</dl></div>",
        f'<div class="card"><h2>kwargs</h2><pre id="kwargs">{pretty(state.kwargs)}</pre>',
    ]
    if state.status is JobStatus.COMPLETED:
        parts.append(f'<h2>result</h2><pre id="result">{pretty(state.result)}</pre>')
    if state.error is not None:
        error = converter.unstructure(state.error)
        parts.append(
            f'<h2>error</h2><p id="error"><strong>{esc(error["type"])}</strong>: '
            f"{esc(error['message'])}</p>"
        )
        if state.error.traceback:
            parts.append(f"<pre>{esc(state.error.traceback)}</pre>")
    parts.append("</div></div>")
    if state.outputs:
        links = "".join(
            f'<li><a href="{esc(base)}/jobs/{esc(state.id)}/outputs/'
            f'{esc(urllib.parse.quote(name, safe=""))}">{esc(name)}</a></li>'
            for name in state.outputs
        )
        parts.append(f'<h2>outputs</h2><ul id="outputs">{links}</ul>')
    if state.attempts:
        logs = "".join(
            f'<li><a href="{esc(base)}/jobs/{esc(state.id)}/logs?attempt={n}">attempt {n}</a></li>'
            for n in range(1, state.attempts + 1)
        )
        parts.append(f'<h2>logs</h2><ul id="logs">{logs}</ul>')
    parts.append(graph)
    parts.append(f"<h2>history</h2>{_history_table(history)}")
    return "".join(parts)


def _job_link(base: str, job_id: str) -> str:
    return f'<a href="{esc(base)}/ui/jobs/{esc(job_id)}">{esc(job_id)}</a>'


def _workflow_card(base: str, wf: WorkflowState, current: str) -> str:
    """A workflow's steps, parents first, indented by depth; the job on this page marked."""
    depth = wf.depths()
    rows = []
    for name, step in wf.steps.items():
        here = ' class="here"' if step.id == current else ""
        indent = "&nbsp;&nbsp;" * depth[name] + ("└─ " if depth[name] else "")
        after = ", ".join(wf.after.get(name, ()))
        rows.append(
            f"<tr{here}><td>{indent}{esc(name)}</td><td>{badge(step.status)}</td>"
            f'<td class="mono">{_job_link(base, step.id)}</td><td>{esc(after)}</td></tr>'
        )
    return (
        f"<h2>workflow {esc(wf.name)} {badge(wf.status)}</h2>"
        '<table id="graph"><tr><th>step</th><th>status</th><th>job</th><th>after</th></tr>'
        f"{''.join(rows)}</table>"
    )


def _history_table(history: list[Event]) -> str:
    if not history:
        return '<p class="muted">No readable history.</p>'
    rows = []
    for event in history:
        data = converter.unstructure(event)
        detail = {k: v for k, v in event.data.items() if k not in ("spec", "traceback", "attempt")}
        error = detail.get("error")
        if isinstance(error, dict):
            detail["error"] = f"{error.get('type')}: {error.get('message')}"
        text = ", ".join(f"{k}={v}" for k, v in detail.items())
        fenced = ' <span class="muted">(fenced)</span>' if event.fenced else ""
        rows.append(
            f"<tr><td>{when(data['at'])}</td><td>{event.epoch}</td><td>{esc(event.type)}{fenced}"
            f"</td><td>{'' if event.attempt is None else event.attempt}</td>"
            f'<td class="mono">{esc(text)}</td></tr>'
        )
    return (
        "<table><tr><th>at</th><th>epoch</th><th>record</th><th>attempt</th><th>details</th></tr>"
        f"{''.join(rows)}</table>"
    )
