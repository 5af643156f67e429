"""
The dashboard's HTML: escaping, the page layout, and its one stylesheet and
one script, inline.

Every piece of text that comes from a job or from the disk (kwargs, results,
errors, tracebacks, progress messages, task, queue and file names) goes
through `esc`, in text and in attributes alike. The stylesheet and the script
are constants whose SHA-256 hashes make up the Content-Security-Policy: no
other script can run on these pages, even if some text escaped escaping. No
build step, no CDN: the whole dashboard is this module and `_http_pages`.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import typing
import urllib.parse

from starlette.responses import HTMLResponse

CSS = """
:root{--fg:#1d232b;--muted:#5d6875;--line:#dde2e8;--bg:#f6f7f9;--card:#fff;--accent:#2456c8;
--ok:#16794c;--bad:#b3261e;--warn:#9a5b00;--idle:#5d6875;--run:#2456c8}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--fg);background:var(--bg)}
header{display:flex;align-items:center;gap:1.5rem;padding:.6rem 1.5rem;background:#1d232b;
color:#fff}
header a{color:#dfe6ee;text-decoration:none}header a:hover{color:#fff}
header .brand{font-weight:700;color:#fff;letter-spacing:.02em}
header .root{margin-left:auto;color:#aab4bf;font-family:ui-monospace,monospace;font-size:12px}
header form{margin:0}
main{max-width:1180px;margin:1.5rem auto;padding:0 1.5rem}
h1{font-size:1.35rem;margin:0 0 1rem}h2{font-size:1.05rem;margin:1.6rem 0 .6rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:1rem 1.2rem}
table{border-collapse:collapse;width:100%;background:var(--card)}
th,td{text-align:left;padding:.42rem .6rem;border-bottom:1px solid var(--line);vertical-align:top}
tr.here td{font-weight:600;background:var(--line)}
th{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
td.mono{word-break:break-all}td time{white-space:nowrap}
.card h2:first-child{margin-top:0}
td.zero{color:#b5bcc5}
a{color:var(--accent)}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12.5px}
pre{background:#f1f3f6;border:1px solid var(--line);border-radius:6px;padding:.7rem;
overflow:auto;max-height:24rem;white-space:pre-wrap;word-break:break-word;margin:0}
.badge{display:inline-block;padding:.05rem .5rem;border-radius:999px;font-size:12px;
font-weight:600;color:#fff;background:var(--idle)}
.s-completed{background:var(--ok)}.s-failed,.s-timed_out,.s-corrupt{background:var(--bad)}
.s-running{background:var(--run)}.s-retrying,.s-held,.s-blocked{background:var(--warn)}
.s-cancelled{background:#7a828c}.paused{background:var(--warn)}
form.inline{display:inline;margin:0}
.bar{height:10px;background:#e4e8ee;border-radius:5px;overflow:hidden;min-width:8rem}
.bar>span{display:block;height:100%;background:var(--accent);width:0}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:1rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;margin:0}
dt{color:var(--muted)}dd{margin:0;word-break:break-all}
.actions{display:flex;gap:.5rem;flex-wrap:wrap;margin:1rem 0}.actions form{margin:0}
button{font:inherit;padding:.35rem .9rem;border-radius:6px;border:1px solid var(--line);
background:#fff;cursor:pointer}button:hover{border-color:var(--accent)}
button.danger{color:var(--bad);border-color:#e7b4b0}
.filters{display:flex;gap:.8rem;align-items:end;margin-bottom:1rem;flex-wrap:wrap}
label{display:flex;flex-direction:column;font-size:12px;color:var(--muted);gap:.2rem}
select,input{font:inherit;padding:.3rem .5rem;border:1px solid var(--line);border-radius:6px}
.note{padding:.6rem .9rem;border-radius:6px;background:#fff4e5;border:1px solid #f0d2a6;
margin-bottom:1rem}
.muted{color:var(--muted)}
.login{max-width:360px;margin:12vh auto}.login form{display:flex;flex-direction:column;gap:.8rem}
"""

SCRIPT = """
(function(){
var bars=document.querySelectorAll("[data-pct]");
for(var i=0;i<bars.length;i++){bars[i].style.width=bars[i].getAttribute("data-pct")+"%";}
var main=document.querySelector("[data-events]");
if(!main||!window.EventSource){return;}
function put(name,text){var el=document.getElementById(name);if(el){el.textContent=text;}}
var source=new EventSource(main.getAttribute("data-events"));
source.addEventListener("state",function(event){
var s=JSON.parse(event.data);
if(s.is_done){source.close();}
if(s.status!==main.getAttribute("data-status")){window.location.reload();return;}
var pct=s.progress===null?0:Math.max(0,Math.min(100,s.progress));
var bar=document.getElementById("bar");if(bar){bar.style.width=pct+"%";}
put("progress",s.progress===null?"":pct.toFixed(1)+"%");
put("progress-message",s.progress_message||"");
put("attempts",s.attempts+" of "+s.max_attempts);
put("worker",s.worker||"");
});
})();
"""


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


#: What the dashboard's pages may load: their own stylesheet and script, and nothing else.
CSP = (
    f"default-src 'none'; style-src {_hash(CSS)}; script-src {_hash(SCRIPT)}; "
    "connect-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
#: Headers of every HTML page.
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def esc(value: object) -> str:
    """`value` as HTML text, safe in element content and in quoted attributes."""
    return html.escape(str(value), quote=True)


def pretty(value: object) -> str:
    """A JSON value, indented, escaped for a ``<pre>``."""
    return esc(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


def query(base: str, **params: str | None) -> str:
    """`base` with the non-empty `params` as its query string, escaped for an attribute."""
    pairs = {k: v for k, v in params.items() if v}
    return esc(base + ("?" + urllib.parse.urlencode(pairs) if pairs else ""))


def hidden_csrf(csrf: str | None) -> str:
    """The hidden field that carries the CSRF token in a dashboard form (none without a token)."""
    return "" if csrf is None else f'<input type="hidden" name="csrf" value="{esc(csrf)}">'


def page(
    title: str,
    body: str,
    *,
    base: str,
    csrf: str | None,
    signed_in: bool,
    status: int = 200,
    attrs: typing.Mapping[str, str] | None = None,
    root: str = "",
) -> HTMLResponse:
    """
    A whole page: the header (links, the root, sign-out), then `body`, which the
    caller has escaped. `attrs` go on ``<main>`` (escaped here).
    """
    main_attrs = "".join(f' {k}="{esc(v)}"' for k, v in (attrs or {}).items())
    sign_out = (
        f'<form method="post" action="{esc(base)}/logout">{hidden_csrf(csrf)}'
        '<button type="submit">Sign out</button></form>'
        if signed_in
        else ""
    )
    text = (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · fsjobs</title><style>{CSS}</style></head><body>"
        f'<header><a class="brand" href="{esc(base)}/">fsjobs</a>'
        f'<a href="{esc(base)}/">Queues</a><a href="{esc(base)}/ui/jobs">Jobs</a>'
        f'<span class="root" title="queue root">{esc(root)}</span>{sign_out}</header>'
        f"<main{main_attrs}>{body}</main><script>{SCRIPT}</script></body></html>"
    )
    return HTMLResponse(text, status, headers=HEADERS)


def bare_page(title: str, body: str, *, status: int = 200) -> HTMLResponse:
    """A page without the header: the sign-in form."""
    text = (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · fsjobs</title><style>{CSS}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )
    return HTMLResponse(text, status, headers=HEADERS)


def badge(status: str) -> str:
    return f'<span class="badge s-{esc(status)}">{esc(status)}</span>'


def when(value: str | None) -> str:
    """An ISO 8601 time from a job's JSON, shortened for a table (``2026-11-23 11:05:12``)."""
    if not value:
        return ""
    return f'<time datetime="{esc(value)}">{esc(value[:19].replace("T", " "))}</time>'
