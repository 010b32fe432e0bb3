"""One self-contained HTML page: semantics (grouped by family) x columns, one coloured
word per cell, a click on a cell for what the documentation predicts against what was
observed, and filters.

Why here: ``memsyscalls matrix`` (one column per target) and ``memsyscalls diff --html``
(the old report, the new one and the change) show the same kind of grid, so both render
through ``render_page``. The page loads nothing: styles, script and data are inline, so it
opens from a CI artifact without a network. Every text from a report reaches the page
escaped (HTML) or as JSON read with ``textContent``, never as markup.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .baseline import Comparison
from .classes import clip, expectation, family_of, family_sort_key, family_title, outcome_class

# Cell classes: css class -> (word in the cell, what it means in the legend and filter).
CLASSES = {
    "differs": ("differs", "differs from the documentation"),
    "pass": ("pass", "passed: the documented behaviour holds"),
    "skip": ("skip", "skipped: this environment cannot show it"),
    "unsup": ("unsup", "unsupported: a probe found the feature missing"),
    "absent": ("absent", "not in this report"),
    "na": ("n/a", "target unavailable"),
    "error": ("error", "target failed to report"),
}
_FROM_OUTCOME = {"passed": "pass", "failed": "differs", "skipped": "skip", "unsupported": "unsup"}
# diff: kind -> (css class, word)
CHANGE_CLASSES = {
    "changed": ("chg-changed", "changed"), "new": ("chg-new", "new"), "missing": ("chg-missing", "gone"),
    "changed-failure": ("chg-message", "message"), "reason-changed": ("chg-reason", "reason"),
    "known": ("chg-known", "known"), "same": ("chg-same", "same"),
}
_CHANGE_MEANINGS = {
    "chg-changed": "outcome changed", "chg-new": "only in the new report", "chg-missing": "only in the old report",
    "chg-message": "fails in both, another message", "chg-reason": "same outcome, another reason",
    "chg-known": "fails in both, the same way", "chg-same": "same outcome",
}


@dataclass
class Head:
    """A column: its label and the facts under it."""

    label: str
    lines: list[str] = field(default_factory=list)
    title: str = ""
    status: str = "ok"  # ok | unavailable | error


@dataclass
class Entry:
    """A cell: one class, one word, and what a click on it shows."""

    cls: str
    word: str
    expected: str | None = None
    observed: str | None = None
    reason: str = ""  # clipped: a failure without expectation data, a skip reason, why not run
    flagged: bool = False  # a difference: counted in the family row

    @classmethod
    def of(cls, semantic: Mapping[str, Any] | None) -> Entry:
        """The cell of one report's semantic (None: not in that report)."""
        if semantic is None:
            return cls("absent", "absent", reason="not in this report")
        kind = outcome_class(semantic)
        css = _FROM_OUTCOME.get(kind, "skip")
        word = CLASSES[css][0] if kind in _FROM_OUTCOME else kind[:8]
        reason = str(semantic.get("reason") or "")
        if css == "differs":
            expected, observed = expectation(semantic)
            return cls(css, word, expected, observed, "" if expected else clip(reason), flagged=True)
        return cls(css, word, reason=clip(reason, 240) if css != "pass" else "")


@dataclass
class Line:
    """A row: one semantic."""

    id: str
    statement: str
    source: str
    tier: str
    cells: list[Entry]
    flagged: bool


def head_facts(env: Mapping[str, Any]) -> list[str]:
    """Kernel, architecture and page size, sandbox, uid: short, for a column head."""
    if not env:
        return []
    kernel = env.get("kernel") or {}
    release = str(kernel.get("release") or "?").split("-", 1)[0]
    page = kernel.get("page_size")
    page_text = "?" if not isinstance(page, int) else (f"{page // 1024}K" if page % 1024 == 0 else str(page))
    sandbox = str((env.get("sandbox") or {}).get("kind") or "?")
    euid = (env.get("identity") or {}).get("euid", "?")
    return [release, f"{kernel.get('arch', '?')} {page_text}", sandbox, f"uid {euid}"]


def head_title(env: Mapping[str, Any]) -> str:
    """The same facts in full, for the head's tooltip."""
    if not env:
        return ""
    kernel = env.get("kernel") or {}
    memlock = ((env.get("rlimits") or {}).get("memlock") or {}).get("soft")
    caps = (env.get("capabilities") or {}).get("effective") or []
    return (f"kernel {kernel.get('release', '?')} {kernel.get('version', '')}\narch {kernel.get('arch', '?')}, "
            f"page {kernel.get('page_size', '?')} bytes\nsandbox {(env.get('sandbox') or {}).get('kind', '?')}\n"
            f"euid {(env.get('identity') or {}).get('euid', '?')}, {len(caps)} capabilities, memlock "
            f"{'unlimited' if memlock is None else memlock}")


_CSS = """
*{box-sizing:border-box}
body{font:13px/1.35 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",Arial,sans-serif;margin:0;
 padding:10px 12px;color:#1d2226;background:#fff}
h1{font-size:18px;margin:0 0 2px}
p{margin:4px 0}
.sub{color:#555}
.warn{color:#8a3b00}
.bar{display:flex;flex-wrap:wrap;gap:6px 12px;align-items:center;margin:8px 0;padding:6px 8px;background:#f3f5f7;
 border-radius:6px}
.bar label{white-space:nowrap}
.bar select,.bar input[type=search]{font:inherit;max-width:100%}
.bar input[type=search]{width:12em}
.bar .shown{color:#555;margin-left:auto}
.legend{display:flex;flex-wrap:wrap;gap:4px 10px;font-size:12px;margin:4px 0;color:#444}
.legend span.c{display:inline-block;min-width:3.6em;text-align:center;border-radius:3px;padding:0 3px}
details.targets{margin:6px 0}
details.targets table{border-collapse:collapse;font-size:12px}
details.targets td,details.targets th{border-bottom:1px solid #ddd;padding:2px 8px 2px 0;text-align:left;
 vertical-align:top}
.wrap{overflow:auto;max-height:calc(100vh - 50px);border:1px solid #d5d9dd;border-radius:4px;max-width:100%}
table.grid{border-collapse:separate;border-spacing:0;font-size:11px}
.grid th,.grid td{padding:2px 3px;border-right:1px solid #fff;border-bottom:1px solid #fff}
.grid thead th{position:sticky;top:0;z-index:2;background:#eef1f4;font-weight:normal;vertical-align:bottom;
 text-align:center;line-height:1.2;color:#444;min-width:3.9em;font-size:10px}
.grid thead th .f{display:block;white-space:nowrap}
.grid thead tr.tot th{top:var(--head,5.6em);z-index:2}
.grid thead th b{display:block;color:#111;font-size:11.5px}
.grid thead th.na b,.grid thead th.error b{color:#888;text-decoration:line-through}
.grid th.sid{position:sticky;left:0;z-index:1;background:#fff;text-align:left;font-weight:normal;
 min-width:13em;max-width:30em;overflow-wrap:anywhere}
.grid thead th.sid{z-index:3;background:#eef1f4;text-align:left}
.grid th.sid a{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;color:#0b4f8a;
 text-decoration:none}
.grid th.sid a:hover{text-decoration:underline}
.grid td{text-align:center;white-space:nowrap;cursor:pointer}
.grid tr.famrow th,.grid tr.famrow td{border-top:2px solid #c9ced3;cursor:pointer;font-weight:600}
.grid tr.famrow th.sid{background:#f7f8f9}
.grid tr.famrow th.sid::before{content:"\\25BE ";color:#777}
.grid tbody.collapsed tr.famrow th.sid::before{content:"\\25B8 "}
.grid tbody.collapsed tr.sem,.grid tbody.collapsed tr.detail{display:none}
.grid tr.famrow small{font-weight:normal;color:#555}
.grid tr.sem.open th.sid{background:#fff7d6}
.c.pass{background:#d8efd8;color:#2f6b33}
.c.differs{background:#e8634f;color:#fff;font-weight:600}
.c.skip{background:#f4e6b5;color:#6b5412}
.c.unsup{background:#d8cff2;color:#49367f}
.c.absent{background:#eceff1;color:#78838c}
.c.na{background:#e2e2e2;color:#6a6a6a}
.c.error{background:#555;color:#fff}
.c.zero{background:#d8efd8;color:#2f6b33;font-weight:normal}
.c.chg-changed{background:#e8634f;color:#fff;font-weight:600}
.c.chg-new{background:#8fb8e8;color:#0f2f55}
.c.chg-missing{background:#f0a35e;color:#4b2500}
.c.chg-message{background:#f2c2b8;color:#6d2416}
.c.chg-reason{background:#f4e6b5;color:#6b5412}
.c.chg-known{background:#f6d9d3;color:#7a3a2c}
.c.chg-same{background:#eceff1;color:#78838c}
tr.detail td{cursor:auto;text-align:left;white-space:normal;background:#fffdf3;padding:0}
tr.detail .box{position:sticky;left:0;max-width:min(62em,calc(100vw - 40px));padding:6px 10px 8px;font-size:12.5px}
tr.detail .stmt{font-size:13px;margin-bottom:2px}
tr.detail .src{color:#555;margin-bottom:4px}
tr.detail ul{margin:4px 0;padding-left:0;list-style:none}
tr.detail li{margin:4px 0;padding-left:4px;border-left:3px solid transparent}
tr.detail li.focus{border-left-color:#0b4f8a}
tr.detail .chip{display:inline-block;min-width:3.6em;text-align:center;border-radius:3px;padding:0 3px;
 margin-right:6px;font-size:11px}
tr.detail dl{display:grid;grid-template-columns:max-content 1fr;gap:1px 8px;margin:3px 0 0 1em}
tr.detail dt{color:#555}
tr.detail dd{margin:0;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;
 overflow-wrap:anywhere}
tr.detail .reason{margin:2px 0 0 1em;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
 overflow-wrap:anywhere;color:#333}
tr.detail .ok{color:#2f6b33}
tr.detail .reason-label{margin:2px 0 0 1em;color:#555;font-size:11.5px}
footer{color:#666;font-size:12px;margin-top:8px}
@media (max-width:700px){body{padding:6px}.grid th.sid{min-width:9.5em;max-width:11em}
 .bar .shown{margin-left:0}h1{font-size:16px}}
"""

_JS = r"""
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("memsys-data").textContent);
  var grid = document.getElementById("grid");
  var only = document.getElementById("only"), fam = document.getElementById("fam"),
      tier = document.getElementById("tier"), cls = document.getElementById("cls"),
      q = document.getElementById("q"), shownEl = document.getElementById("shown");
  var ncols = DATA.heads.length + 1;
  var MAN = /([A-Za-z_][A-Za-z0-9_]*)\(([1-8])\)/g;

  function apply() {
    var needle = q.value.trim().toLowerCase(), narrowing = !!(tier.value || cls.value || needle);
    var shown = 0;
    for (var b = 0; b < grid.tBodies.length; b++) {
      var body = grid.tBodies[b];
      if (fam.value && fam.value !== body.getAttribute("data-fam")) { body.hidden = true; continue; }
      var rows = body.querySelectorAll("tr.sem"), visible = 0;
      for (var i = 0; i < rows.length; i++) {
        var r = rows[i], d = r.dataset;
        var ok = (!only.checked || d.flag === "1") && (!tier.value || d.tier === tier.value) &&
                 (!cls.value || (" " + d.cls + " ").indexOf(" " + cls.value + " ") >= 0) &&
                 (!needle || d.id.toLowerCase().indexOf(needle) >= 0);
        r.hidden = !ok;
        var next = r.nextElementSibling;
        if (next && next.classList.contains("detail")) next.hidden = !ok;
        if (ok) visible++;
      }
      body.hidden = narrowing && visible === 0;
      body.querySelector(".vis").textContent = narrowing && visible ? "\u00b7 " + visible + " shown" : "";
      shown += visible;
    }
    shownEl.textContent = shown + " of " + DATA.rows.length + " semantics shown";
  }

  function text(tag, className, content) {
    var el = document.createElement(tag);
    if (className) el.className = className;
    if (content !== undefined && content !== null) el.textContent = content;
    return el;
  }

  function source(src) {
    var out = document.createDocumentFragment(), last = 0, m;
    MAN.lastIndex = 0;
    while ((m = MAN.exec(src)) !== null) {
      out.appendChild(document.createTextNode(src.slice(last, m.index)));
      var a = text("a", "", m[0]);
      a.href = "https://man7.org/linux/man-pages/man" + m[2] + "/" + m[1] + "." + m[2] + ".html";
      a.rel = "noopener";
      out.appendChild(a);
      last = m.index + m[0].length;
    }
    out.appendChild(document.createTextNode(src.slice(last)));
    return out;
  }

  function detail(row, focus) {
    var data = DATA.rows[+row.dataset.i];
    var tr = text("tr", "detail"), td = text("td"), box = text("div", "box");
    td.colSpan = ncols;
    box.appendChild(text("div", "stmt", data.s || "(no statement recorded)"));
    var src = text("div", "src");
    src.appendChild(text("span", "", row.dataset.id + " \u00b7 " + (data.t || "?") + " \u00b7 "));
    src.appendChild(source(data.src || "no source recorded"));
    box.appendChild(src);
    var ul = text("ul");
    data.g.forEach(function (g) {
      var li = text("li", g.l.indexOf(focus) >= 0 ? "focus" : "");
      li.appendChild(text("span", "chip c " + g.c, g.w));
      li.appendChild(text("b", "", g.l.join(", ")));
      if (g.e && g.o) {
        var dl = text("dl", "expect");
        dl.appendChild(text("dt", "", DATA.expectedLabel));
        dl.appendChild(text("dd", "expected", g.e));
        dl.appendChild(text("dt", "", "observed"));
        dl.appendChild(text("dd", "observed", g.o));
        li.appendChild(dl);
      } else if (g.r) {
        if (g.c === "differs") {
          li.appendChild(text("div", "reason-label", "no expectation data recorded; the test's message, clipped:"));
        }
        li.appendChild(text("div", "reason", g.r));
      }
      ul.appendChild(li);
    });
    box.appendChild(ul);
    if (data.ok.length) box.appendChild(text("div", "ok", DATA.okLabel + data.ok.join(", ")));
    td.appendChild(box);
    tr.appendChild(td);
    return tr;
  }

  function toggle(row, focus, keepOpen) {
    var next = row.nextElementSibling;
    if (next && next.classList.contains("detail")) {
      if (keepOpen) return;
      next.remove();
      row.classList.remove("open");
      return;
    }
    row.parentNode.insertBefore(detail(row, focus), row.nextSibling);
    row.classList.add("open");
  }

  grid.addEventListener("click", function (ev) {
    var t = ev.target;
    if (!(t instanceof Element) || t.closest("tr.detail")) return;
    var famrow = t.closest("tr.famrow");
    if (famrow) { famrow.parentNode.classList.toggle("collapsed"); return; }
    var row = t.closest("tr.sem");
    if (!row) return;
    var link = t.closest("a");
    if (link) { ev.preventDefault(); history.replaceState(null, "", "#" + encodeURIComponent(row.dataset.id)); }
    var cell = t.closest("td.c");
    toggle(row, cell ? DATA.heads[+cell.dataset.col] : null, false);
  });

  function openHash() {
    var id = decodeURIComponent(location.hash.slice(1));
    if (!id) return;
    var row = null, rows = grid.querySelectorAll("tr.sem");
    for (var i = 0; i < rows.length; i++) if (rows[i].dataset.id === id) row = rows[i];
    if (!row) return;
    if (row.hidden || row.parentNode.hidden) {
      only.checked = false; fam.value = ""; tier.value = ""; cls.value = ""; q.value = "";
      apply();
    }
    row.parentNode.classList.remove("collapsed");
    toggle(row, null, true);
    row.scrollIntoView({block: "center"});
  }

  function sizeHead() {
    var first = grid.tHead.rows[0];
    if (first) grid.style.setProperty("--head", first.getBoundingClientRect().height + "px");
  }

  [only, fam, tier, cls].forEach(function (el) { el.addEventListener("change", apply); });
  q.addEventListener("input", apply);
  document.getElementById("collapse").addEventListener("click", function () {
    for (var b = 0; b < grid.tBodies.length; b++) grid.tBodies[b].classList.add("collapsed");
  });
  document.getElementById("expand").addEventListener("click", function () {
    for (var b = 0; b < grid.tBodies.length; b++) grid.tBodies[b].classList.remove("collapsed");
  });
  window.addEventListener("hashchange", openHash);
  window.addEventListener("resize", sizeHead);
  sizeHead();
  apply();
  openHash();
  document.body.setAttribute("data-ready", "1");
})();
"""


def _groups(line: Line, heads: Sequence[Head]) -> tuple[list[dict[str, Any]], list[str]]:
    """The non-passing cells of a row, same text grouped (``gvisor, qemu-6.1: ...``), and
    the labels where it passed."""
    groups: dict[tuple[str, str, str | None, str | None, str], dict[str, Any]] = {}
    passed = []
    for head, cell in zip(heads, line.cells, strict=True):
        if cell.cls in ("pass", "chg-same"):
            passed.append(head.label)
            continue
        key = (cell.cls, cell.word, cell.expected, cell.observed, cell.reason)
        group = groups.setdefault(key, {"c": cell.cls, "w": cell.word, "l": [], "e": cell.expected,
                                        "o": cell.observed, "r": cell.reason})
        group["l"].append(head.label)
    order = {name: i for i, name in enumerate(("differs", "chg-changed", "chg-new", "chg-missing", "chg-message",
                                                "chg-reason", "error", "unsup", "skip", "na", "absent"))}
    return sorted(groups.values(), key=lambda g: order.get(str(g["c"]), 99)), passed


def _family_cell(cells: Sequence[Entry], head: Head) -> tuple[str, str, str]:
    """(class, word, tooltip) for a family row's cell in one column."""
    counts: dict[str, int] = {}
    for cell in cells:
        counts[cell.word] = counts.get(cell.word, 0) + 1
    title = ", ".join(f"{n} {word}" for word, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    flagged = [cell for cell in cells if cell.flagged]
    if flagged:
        return flagged[0].cls, str(len(flagged)), title
    if head.status != "ok":
        return ("na" if head.status == "unavailable" else "error"), CLASSES["na" if head.status == "unavailable"
                                                                            else "error"][0], title
    return "zero", "ok", title


def render_page(title: str, heading: str, intro: Sequence[str], heads: Sequence[Head], lines: Sequence[Line],
                *, flagged_label: str, flag_word: str = "differ", expected_label: str = "documentation predicts",
                ok_label: str = "passes in: ", targets_html: str = "", footer: str = "",
                legend: Mapping[str, tuple[str, str]] | None = None) -> str:
    """The page. ``intro`` paragraphs are plain text (escaped here); ``targets_html`` is
    markup the caller built (and escaped)."""
    e = html.escape
    families: dict[str, list[Line]] = {}
    for line in sorted(lines, key=lambda ln: (family_sort_key(family_of(ln.id)), ln.id)):
        families.setdefault(family_of(line.id), []).append(line)
    tiers = sorted({line.tier for line in lines if line.tier})
    class_counts: dict[str, int] = {}
    for line in lines:
        for css in {cell.cls for cell in line.cells}:
            class_counts[css] = class_counts.get(css, 0) + 1
    n_flagged = sum(1 for line in lines if line.flagged)

    out = ["<!doctype html><html lang=en><head><meta charset=utf-8>",
           "<meta name=viewport content='width=device-width,initial-scale=1'>",
           f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
           f"<h1>{e(heading)}</h1>"]
    out += [f"<p class={'warn' if text.startswith('!') else 'sub'}>{e(text.removeprefix('!'))}</p>" for text in intro]
    # filters
    out.append("<div class=bar role=search>")
    out.append(f"<label><input type=checkbox id=only{' checked' if n_flagged else ''}> {e(flagged_label)} "
               f"({n_flagged})</label>")
    out.append("<label>family <select id=fam><option value=''>all</option>"
               + "".join(f"<option value='{e(key)}'>{e(family_title(key))} ({len(members)})</option>"
                         for key, members in families.items()) + "</select></label>")
    out.append("<label>tier <select id=tier><option value=''>all</option>"
               + "".join(f"<option value='{e(t)}'>{e(t)}</option>" for t in tiers) + "</select></label>")
    classes = [c for c in CLASSES if c in class_counts or c in ("differs", "pass", "skip", "unsup")]
    classes += sorted(c for c in class_counts if c not in CLASSES)
    out.append("<label>outcome <select id=cls><option value=''>any</option>"
               + "".join(f"<option value='{e(c)}'>{e(CLASSES[c][0] if c in CLASSES else c)} in a column "
                         f"({class_counts.get(c, 0)})</option>" for c in classes) + "</select></label>")
    out.append("<input type=search id=q placeholder='id contains…' aria-label='semantic id contains'>")
    out.append("<span><button type=button id=collapse>collapse all</button> "
               "<button type=button id=expand>expand all</button></span>")
    out.append("<span class=shown id=shown></span></div>")
    out.append("<div class=legend>" + "".join(f"<span><span class='c {c}'>{e(w)}</span> {e(meaning)}</span>"
                                              for c, (w, meaning) in {**CLASSES, **(legend or {})}.items())
               + "</div>")
    if targets_html:
        out.append(targets_html)
    # the grid
    out.append("<div class=wrap><table class=grid id=grid><thead><tr><th class=sid>semantic <small>"
               "(click a cell for why)</small></th>")
    for head in heads:
        css = {"ok": "", "unavailable": "na", "error": "error"}.get(head.status, "error")
        out.append(f"<th class='col {css}' title='{e(head.title)}'><b>{_breakable(head.label)}</b>"
                   + "".join(f"<span class=f>{e(fact)}</span>" for fact in head.lines) + "</th>")
    out.append(f"</tr><tr class=tot><th class=sid>all {len(lines)} · {n_flagged} {e(flag_word)}</th>")
    for i, head in enumerate(heads):
        css, word, tip = _family_cell([line.cells[i] for line in lines], head)
        out.append(f"<th class='c {css}' title='{e(tip)}'>{e(word)}</th>")
    out.append("</tr></thead>")
    data_rows: list[dict[str, Any]] = []
    for key, members in families.items():
        flagged_here = sum(1 for line in members if line.flagged)
        out.append(f"<tbody data-fam='{e(key)}'><tr class=famrow><th class=sid>{e(family_title(key))} <small>"
                   f"{len(members)}{f' · {flagged_here} {e(flag_word)}' if flagged_here else ''} "
                   f"<span class=vis></span></small></th>")
        for i, head in enumerate(heads):
            css, word, tip = _family_cell([line.cells[i] for line in members], head)
            out.append(f"<td class='c {css}' title='{e(tip)}'>{e(word)}</td>")
        out.append("</tr>")
        for line in members:
            index = len(data_rows)
            groups, passed = _groups(line, heads)
            data_rows.append({"s": line.statement, "src": line.source, "t": line.tier, "g": groups, "ok": passed})
            row_classes = " ".join(sorted({cell.cls for cell in line.cells}))
            out.append(f"<tr class=sem data-i={index} data-id='{e(line.id)}' data-tier='{e(line.tier)}' "
                       f"data-cls='{e(row_classes)}' data-flag={1 if line.flagged else 0}>"
                       f"<th class=sid><a href='#{e(line.id)}' title='{e(line.statement)}'>{e(line.id)}</a></th>"
                       + "".join(f"<td class='c {e(cell.cls)}' data-col={i}>{e(cell.word)}</td>"
                                 for i, cell in enumerate(line.cells)) + "</tr>")
        out.append("</tbody>")
    out.append("</table></div>")
    if footer:
        out.append(f"<footer>{e(footer)}</footer>")
    data = {"heads": [head.label for head in heads], "rows": data_rows, "expectedLabel": expected_label,
            "okLabel": ok_label}
    out.append("<script type=application/json id=memsys-data>" + _script_json(data) + "</script>")
    out.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(out) + "\n"


def _breakable(label: str) -> str:
    """A column label that may wrap after its hyphens and colons, and hyphenate
    (a soft hyphen mid-word) a long word, so narrow columns never cut it anywhere."""
    text = re.sub(r"[A-Za-z]{9,}", lambda m: m[0][: len(m[0]) // 2] + "\u00ad" + m[0][len(m[0]) // 2:], label)
    text = html.escape(text)
    for mark in ("-", ":"):
        text = text.replace(mark, mark + "<wbr>")
    return text


def _script_json(data: Mapping[str, Any]) -> str:
    """JSON safe inside a <script> element: no '<' (so no '</script>'), no U+2028/9."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


# --- memsyscalls diff --html ----------------------------------------------------------


def render_diff_page(old: Mapping[str, Any], new: Mapping[str, Any], comparison: Comparison,
                     old_label: str = "old", new_label: str = "new") -> str:
    """What changed between two reports, grouped by family: the old outcome, the new one
    and the change, one word each; a click shows both sides' reasons."""
    old_rows = {str(s["id"]): s for s in old.get("semantics", [])}
    new_rows = {str(s["id"]): s for s in new.get("semantics", [])}
    heads = [Head(old_label, head_facts(old.get("environment") or {}), head_title(old.get("environment") or {})),
             Head(new_label, head_facts(new.get("environment") or {}), head_title(new.get("environment") or {})),
             Head("change", ["old → new"])]
    lines = []
    counts: dict[str, int] = {}
    for difference in comparison.differences:
        counts[difference.kind] = counts.get(difference.kind, 0) + 1
        before, after = old_rows.get(difference.id), new_rows.get(difference.id)
        either = after or before or {}
        old_cell, new_cell = Entry.of(before), Entry.of(after)
        change = difference.kind not in ("same", "known")
        css, word = CHANGE_CLASSES.get(difference.kind, ("chg-changed", difference.kind[:8]))
        note = {"changed": f"{difference.old} → {difference.new}", "new": "only in the new report",
                "missing": "only in the old report", "changed-failure": "fails in both, with another message",
                "reason-changed": "same outcome, another reason", "known": "fails in both, the same way",
                "same": "same outcome"}.get(difference.kind, difference.kind)
        lines.append(Line(difference.id, str(either.get("statement") or ""), str(either.get("source") or ""),
                          str(either.get("tier") or ""),
                          [old_cell, new_cell, Entry(css, word, reason=note, flagged=change)], change))
    n_changed = sum(1 for line in lines if line.flagged)
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
    return render_page(
        f"memsyscalls diff: {old_label} → {new_label}", f"What changed: {old_label} → {new_label}",
        [f"{len(lines)} semantics compared; {n_changed} changed ({summary}). Click a row for both sides' "
         "reasons and what the documentation predicts against what was observed."],
        heads, lines, flagged_label="only changed semantics", flag_word="changed", ok_label="passes in: ",
        footer="Generated by memsyscalls diff --html from two pytest-memsyscalls v1 reports.",
        legend={css: (word, _CHANGE_MEANINGS[css]) for css, word in CHANGE_CLASSES.values()})
