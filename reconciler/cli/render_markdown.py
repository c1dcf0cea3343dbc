"""Plans rendered for code review: a Markdown pull-request comment with Mermaid pictures (the
dependency graph and a timeline), and the dependency graph as Graphviz DOT.

Names and free text come from manifests and the observed estate, so every piece of it is
escaped for where it lands: Markdown text and table cells, HTML, Mermaid labels, DOT strings.
"""

from __future__ import annotations

import html
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from reconciler.cli.render import SYMBOL, describe, duration, group_of, size, summary_line
from reconciler.engine.plan import Plan
from reconciler.engine.review import ChangedObjects
from reconciler.model.actions import DISRUPTION_ORDER, Action
from reconciler.runtime.review import GitReview

MAX_CHARS = 60_000
GRAPH_MAX_ACTIONS = 40  # a bigger dependency graph is unreadable in a comment
GANTT_MAX_BARS = 80
MAX_LISTED = 100  # changed objects named per category; the rest are counted
MAX_VIOLATIONS = 50
MAX_NOTES = 20
MARKER = "<!-- reconciler-plan -->"  # lets a CI job find and update its earlier comment
FULL_PLAN = "`reconciler plan --json`"

# Fill colours by disruption, light enough for black text; the same in Mermaid and DOT.
COLOUR: dict[str, str] = {
    "none": "#eeeeee",
    "online": "#fff3c4",
    "live-migration": "#cfe3ff",
    "downtime": "#ffd0d0",
    "reboot": "#e8c8ff",
    "destructive": "#ff9e80",
}
BLOCKED_COLOUR = "#c62828"
COLOUR_NAME = {
    "none": "grey",
    "online": "yellow",
    "live-migration": "blue",
    "downtime": "red",
    "reboot": "purple",
    "destructive": "orange",
}


# --- escaping ----------------------------------------------------------------------------

_MD_PUNCTUATION = re.compile(r"([\\`*_\[\]#|~@])")
_MERMAID_SAFE = re.compile(r"[A-Za-z0-9 ._,/+=-]")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def md(text: object) -> str:
    """Text for a Markdown paragraph or table cell: on one line, with no markup or HTML in it.

    ``& < >`` become entities (no tags, no character references); the punctuation that
    Markdown, a table or GitHub (mentions, issue links) would read is backslash-escaped.
    """
    return _MD_PUNCTUATION.sub(r"\\\1", html.escape(_one_line(text), quote=False))


def html_text(text: object) -> str:
    """Text inside an HTML element (a ``<summary>``)."""
    return html.escape(_one_line(text), quote=True)


def mermaid_text(text: object) -> str:
    """Text for a Mermaid label: anything but letters, digits and plain punctuation becomes an
    entity code (``#34;``), so quotes, brackets, arrows, colons and backticks cannot end a
    label, a line or the code fence."""
    return "".join(c if _MERMAID_SAFE.fullmatch(c) else f"#{ord(c)};" for c in _one_line(text))


def dot_string(text: object) -> str:
    """A double-quoted DOT string."""
    escaped = str(text).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\r", "").replace("\n", "\\n") + '"'


def code(text: str) -> str:
    """An inline code span for text we generate (commands, commit ids)."""
    return f"`{text}`"


# --- pieces ------------------------------------------------------------------------------


def _value(v: object) -> str:
    if v is None:
        return "(none)"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(str(x) for x in v) + "]"
    return str(v)


def _change_cell(action: Action) -> str:
    p = action.params
    if action.type == "migrate_vm":
        return md(
            f"{p['vm']} {p['source']} → {p['destination']} ({p['method']}, {p['memory_mib']} MiB)"
        )
    if action.type == "test_live_migration":
        return md(describe(action))
    lines = [md(action.target)]
    lines.extend(
        f"{md(k)}: {md(_value(b))} → {md(_value(a))}" for k, (b, a) in action.changes.items()
    )
    return "<br>".join(lines)


def _blocked_ids(plan: Plan) -> set[str]:
    return {v.action for v in plan.violations if v.severity == "block" and v.action is not None}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _named(names: Sequence[str], limit: int = MAX_LISTED) -> str:
    shown = ", ".join(md(n) for n in names[:limit])
    more = len(names) - limit
    return shown + (f", … and {more} more" if more > 0 else "")


def _summary(plan: Plan) -> list[str]:
    out = [f"**{md(summary_line(plan))}**", ""]
    blocking = [v for v in plan.violations if v.severity == "block"]
    if blocking:
        out += [
            f"> **BLOCKED**: {_plural(len(blocking), 'safety violation')}. "
            "`reconciler apply` refuses this plan; see the fixes below.",
            "",
        ]
    elif plan.actions:
        out += ["> **Safe to apply**: no safety rule is broken.", ""]
    if not plan.actions and not plan.violations:
        return out + _unmanaged(plan) + _notes(plan)  # informational notes, conditions
    s = plan.summary()
    by_disruption = Counter(a.disruption for a in plan.actions)
    disruption = ", ".join(f"{by_disruption[d]} {d}" for d in DISRUPTION_ORDER if by_disruption[d])
    types = ", ".join(f"{code(t)} {n}" for t, n in s["by_type"].items())
    warned = len(plan.violations) - len(blocking)
    violations = (
        ", ".join(
            part
            for part in (
                f"{len(blocking)} blocking" if blocking else "",
                _plural(warned, "warning") if warned else "",
            )
            if part
        )
        or "none"
    )
    clusters = sorted({a.cluster for a in plan.actions})
    out += [
        "| | |",
        "|---|---|",
        f"| **Actions** | {len(plan.actions)}: {types or 'none'} |",
        f"| **Disruption** | {md(disruption) or 'none'} |",
        f"| **Estimated duration** | {duration(plan.estimate_seconds())}{_serial_note(plan)} |",
        f"| **To move** | {size(plan.bytes_to_move()) if plan.bytes_to_move() else 'nothing'} |",
        f"| **Violations** | {violations} |",
        f"| **Clusters** | {_named(clusters, 20) or 'none'} |",
        "",
    ]
    out += _removals(plan)
    out += _violations(plan)
    return out + _notes(plan)


def _notes(plan: Plan) -> list[str]:
    if not plan.notes:
        return []
    out = ["**Notes**", ""]
    out += [f"- {md(n)}" for n in plan.notes[:MAX_NOTES]]
    if len(plan.notes) > MAX_NOTES:
        out.append(f"- … and {len(plan.notes) - MAX_NOTES} more: {FULL_PLAN}")
    out.append("")
    return out


def _removals(plan: Plan) -> list[str]:
    """Removals apart, above everything else a reviewer reads: they cannot be undone."""
    removals = [a for a in plan.actions if a.disruption == "destructive"]
    out: list[str] = []
    if removals:
        out += [f"**Removals** ({len(removals)}, destructive, last in the plan)", ""]
        out += [f"- 🗑️ {code(a.type)} {md(a.target)}: {md(a.reason)}" for a in removals]
        out.append("")
    return out + _unmanaged(plan)


def _unmanaged(plan: Plan) -> list[str]:
    if not plan.unmanaged:
        return []
    return [
        "**Unmanaged** (in the world, in no manifest; left alone)",
        "",
        f"- {_named(list(plan.unmanaged))}",
        "",
    ]


def _violations(plan: Plan) -> list[str]:
    if not plan.violations:
        return []
    step = {a.id: i + 1 for i, a in enumerate(plan.actions)}
    out = [
        "**Safety violations**",
        "",
        "| | rule | object | step | problem | fix |",
        "|---|---|---|---|---|---|",
    ]
    for v in plan.violations[:MAX_VIOLATIONS]:
        level = "⛔ block" if v.severity == "block" else "⚠️ warn"
        where = str(step[v.action]) if v.action in step else ""
        out.append(
            f"| {level} | {code(v.rule)} | {md(v.target)} | {where} | {md(v.message)} | "
            f"{md(v.fix)} |"
        )
    if len(plan.violations) > MAX_VIOLATIONS:
        more = len(plan.violations) - MAX_VIOLATIONS
        out += ["", f"… and {more} more violation(s): {FULL_PLAN} lists them all."]
    out.append("")
    return out


def _source(review: GitReview | None) -> list[str]:
    if review is None:
        return []
    where = f"Manifests at {code(review.head_commit[:12])} ({md(review.head)})"
    if review.base_commit is not None:
        where += f", compared with {code(review.base_commit[:12])} ({md(review.base)})"
    return [where + ".", ""]


def _changed(changed: ChangedObjects | None) -> list[str]:
    if changed is None:
        return []
    out = ["### Manifest objects this change touches", ""]
    if changed.empty:
        return [*out, "No manifest object changed.", ""]
    for label, names in (
        ("Added", changed.added),
        ("Removed", changed.removed),
        ("Changed", changed.changed),
    ):
        if names:
            out.append(f"- **{label}** ({len(names)}): {_named(names)}")
    return [*out, ""]


# --- pictures ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Bar:
    label: str
    cluster: str
    seconds: float
    disruption: str


def _bar_label(step: int, a: Action) -> str:
    p = a.params
    if a.type == "migrate_vm":
        return f"{step} move {p['vm']} {p['source']} → {p['destination']}"
    if a.type in ("drain_node", "resume_node"):
        return f"{step} {a.type.split('_')[0]} {p['node']}"
    return f"{step} {a.type} {a.target.split('/', 1)[-1]}"


_RANK: dict[str, int] = {d: i for i, d in enumerate(DISRUPTION_ORDER)}


def _worst(disruptions: Iterable[str]) -> str:
    return max(disruptions, key=lambda d: _RANK.get(d, 0))


def _bars(plan: Plan) -> list[_Bar]:
    """One bar per action; past GANTT_MAX_BARS, runs of one action type are merged, and past
    that the tail is one bar, so the timeline always ends at the plan's total estimate."""
    actions = list(plan.actions)
    if len(actions) <= GANTT_MAX_BARS:
        return [
            _Bar(_bar_label(i + 1, a), a.cluster, a.estimate_seconds, a.disruption)
            for i, a in enumerate(actions)
        ]
    runs: list[list[tuple[int, Action]]] = []
    for i, a in enumerate(actions):
        last = runs[-1][-1][1] if runs else None
        if last is not None and (last.type, last.cluster) == (a.type, a.cluster):
            runs[-1].append((i + 1, a))
        else:
            runs.append([(i + 1, a)])
    bars: list[_Bar] = []
    for run in runs:
        first_step, first = run[0]
        if len(run) == 1:
            label = _bar_label(first_step, first)
        else:
            label = f"{first_step}-{run[-1][0]} {first.type} ×{len(run)}"
        bars.append(
            _Bar(
                label,
                first.cluster,
                sum(a.estimate_seconds for _, a in run),
                _worst(a.disruption for _, a in run),
            )
        )
    if len(bars) > GANTT_MAX_BARS:
        rest = bars[GANTT_MAX_BARS - 1 :]
        tail = _Bar(
            f"{len(rest)} more groups of actions",
            rest[0].cluster,
            sum(b.seconds for b in rest),
            _worst(b.disruption for b in rest),
        )
        bars = [*bars[: GANTT_MAX_BARS - 1], tail]
    return bars


def timeline_mermaid(plan: Plan) -> str:
    """A Mermaid gantt of the plan's estimated durations, back to back in execution order."""
    lines = [
        "```mermaid",
        "gantt",
        "    title Estimated timeline, one action at a time",
        "    dateFormat HH:mm:ss",
        "    axisFormat %H:%M",
    ]
    section = None
    for i, bar in enumerate(_bars(plan)):
        if bar.cluster != section:
            section = bar.cluster
            lines.append(f"    section {mermaid_text(section)}")
        tag = {
            "live-migration": "active, ",
            "downtime": "crit, ",
            "reboot": "crit, ",
            "destructive": "crit, ",
        }.get(bar.disruption, "")
        start = "00:00:00" if i == 0 else f"after t{i}"
        seconds = max(1, round(bar.seconds))
        lines.append(f"    {mermaid_text(bar.label)} :{tag}t{i + 1}, {start}, {seconds}s")
    lines.append("```")
    return "\n".join(lines)


def graph_mermaid(plan: Plan) -> str:
    """A Mermaid flowchart of the actions, an arrow from each action to what waits for it."""
    node = {a.id: f"a{i + 1}" for i, a in enumerate(plan.actions)}
    blocked = _blocked_ids(plan)
    lines = ["```mermaid", "graph TD"]
    for i, a in enumerate(plan.actions):
        label = f"{mermaid_text(f'{i + 1}. {a.type}')}<br/>{mermaid_text(a.target)}"
        lines.append(f'    {node[a.id]}["{label}"]:::{_css(a.disruption)}')
    for a in plan.actions:
        lines.extend(f"    {node[d]} --> {node[a.id]}" for d in a.depends_on if d in node)
    for disruption in DISRUPTION_ORDER:
        lines.append(f"    classDef {_css(disruption)} fill:{COLOUR[disruption]},stroke:#555")
    lines.extend(
        f"    style {node[a.id]} stroke:{BLOCKED_COLOUR},stroke-width:3px"
        for a in plan.actions
        if a.id in blocked
    )
    lines.append("```")
    return "\n".join(lines)


def _css(disruption: str) -> str:
    return "d_" + disruption.replace("-", "_")


def _pictures(plan: Plan) -> list[str]:
    if not plan.actions:
        return []
    out = ["### Timeline", "", timeline_mermaid(plan), ""]
    out += ["### Dependency graph", ""]
    if len(plan.actions) > GRAPH_MAX_ACTIONS:
        out += [
            f"Omitted: {len(plan.actions)} actions are too many to draw here (at most "
            f"{GRAPH_MAX_ACTIONS}). Draw it with `reconciler plan --format dot | dot -Tsvg`.",
            "",
        ]
        return out
    legend = ", ".join(f"{d} {COLOUR_NAME[d]}" for d in DISRUPTION_ORDER)
    out += [graph_mermaid(plan), "", f"Colours by disruption: {legend}; red border: blocked.", ""]
    return out


# --- details -----------------------------------------------------------------------------

_TABLE_HEAD = "| # | | action | change | disruption | estimate | why |\n" + "|---" * 7 + "|"


def _row(step: int, a: Action, blocked: bool) -> str:
    flag = " **⛔ blocked**" if blocked else ""
    return (
        f"| {step} | {md(SYMBOL.get(a.type, '~'))} | {code(a.type)} | {_change_cell(a)} | "
        f"{md(a.disruption)}{flag} | {duration(a.estimate_seconds)} | {md(a.reason)} |"
    )


def _details(plan: Plan, budget: int) -> tuple[list[str], int]:
    """The per-cluster sections that fit in ``budget`` characters, and how many actions they
    list. Sections are closed properly wherever the cut falls."""
    step = {a.id: i + 1 for i, a in enumerate(plan.actions)}
    blocked = _blocked_ids(plan)
    by_cluster: dict[str, dict[str, list[Action]]] = defaultdict(lambda: defaultdict(list))
    for a in plan.actions:
        by_cluster[a.cluster][group_of(a)].append(a)
    out: list[str] = []
    used = 0
    shown = 0
    closer = "\n</details>\n"
    for cluster in sorted(by_cluster):
        groups = by_cluster[cluster]
        count = sum(len(g) for g in groups.values())
        seconds = sum(a.estimate_seconds for g in groups.values() for a in g)
        opener = (
            f"<details><summary><b>Cluster {html_text(cluster)}</b>: "
            f"{_plural(count, 'action')}, {duration(seconds)}</summary>\n"
        )
        if used + len(opener) + len(closer) > budget:
            break
        out.append(opener)
        used += len(opener) + len(closer)
        full = True
        for group in sorted(groups, key=lambda g: min(step[a.id] for a in groups[g])):
            head = f"\n**{md(group)}**\n\n{_TABLE_HEAD}\n"
            rows = [_row(step[a.id], a, a.id in blocked) + "\n" for a in groups[group]]
            if used + len(head) + len(rows[0]) > budget:
                full = False
                break
            out.append(head)
            used += len(head)
            for row in rows:
                if used + len(row) > budget:
                    full = False
                    break
                out.append(row)
                used += len(row)
                shown += 1
            if not full:
                break
        out.append(closer)
        if not full:
            break
    return out, shown


# --- the comment -------------------------------------------------------------------------


def plan_markdown(
    plan: Plan,
    changed: ChangedObjects | None = None,
    max_chars: int = MAX_CHARS,
    review: GitReview | None = None,
) -> str:
    """The plan as a pull-request comment: the summary first, then pictures, then details in
    collapsible sections per cluster, cut to stay under ``max_chars`` with a note that says so.

    ``review`` names the commits the manifests were read at; its changed objects are used when
    ``changed`` is not given.
    """
    if changed is None and review is not None:
        changed = review.changed
    head = "\n".join(
        [
            MARKER,
            "## reconciler plan",
            "",
            *_source(review),
            *_summary(plan),
            *_changed(changed),
        ]
    )
    footer = (
        f"\n<sub>{md(plan.fingerprint[:19])} · made by reconciler from the observed estate; "
        "apply exactly this plan with `reconciler apply --plan FILE` "
        "(it refuses a plan whose estate has changed since).</sub>\n"
    )
    if not plan.actions:
        return head + footer
    note_room = 600  # the truncation note
    pictures = "\n".join(_pictures(plan))
    if len(head) + len(pictures) + len(footer) + note_room > max_chars:
        pictures = (
            "### Pictures\n\nOmitted: the timeline and the graph do not fit in this comment. "
            "Draw the graph with `reconciler plan --format dot`.\n"
        )
    body = head + "\n" + pictures + "\n### Details\n\n"
    budget = max_chars - len(body) - len(footer) - note_room
    details, shown = _details(plan, budget)
    total = len(plan.actions)
    note = ""
    if shown < total:
        left_out = total - shown
        note = (
            f"\n> **Truncated:** the details list {shown} of {total} actions; "
            f"{_plural(left_out, 'action')} are left out to keep this comment under "
            f"{max_chars:,} characters. The summary above covers the whole plan. "
            f"For every action: {FULL_PLAN} (or `reconciler plan` for text).\n"
        )
    text = body + "".join(details) + note + footer
    if len(text) > max_chars:
        # Only a summary longer than the comment itself gets here (thousands of violations
        # or changed objects): cut it at a line, and say so.
        cut = text.rfind("\n", 0, max(0, max_chars - 300))
        text = text[: max(cut, 0)] + (
            f"\n\n> **Truncated:** the summary alone is longer than {max_chars:,} characters. "
            f"The whole plan: {FULL_PLAN}.\n"
        )
    return text


# --- Graphviz ----------------------------------------------------------------------------


def plan_dot(plan: Plan) -> str:
    """The dependency graph for Graphviz: a box per action (numbered, typed, with its target),
    filled by disruption and outlined red when blocked, grouped by cluster; an edge from each
    action to the actions that depend on it. Same plan, same bytes."""
    blocked = _blocked_ids(plan)
    index = {a.id: i + 1 for i, a in enumerate(plan.actions)}
    lines = [
        "digraph plan {",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
        '  edge [color="#555555"];',
    ]
    by_cluster: dict[str, list[Action]] = defaultdict(list)
    for a in plan.actions:
        by_cluster[a.cluster].append(a)
    for c, cluster in enumerate(sorted(by_cluster)):
        lines.append(f"  subgraph cluster_{c + 1} {{")
        lines.append(f"    label={dot_string(f'cluster {cluster}')};")
        for a in by_cluster[cluster]:
            label = dot_string(f"{index[a.id]}. {a.type}\n{a.target}")
            attrs = [f"label={label}", f"fillcolor={dot_string(COLOUR[a.disruption])}"]
            attrs.append(f"tooltip={dot_string(f'{a.disruption}: {a.reason}')}")
            if a.id in blocked:
                attrs += [f"color={dot_string(BLOCKED_COLOUR)}", "penwidth=2"]
            lines.append(f"    {dot_string(a.id)} [{', '.join(attrs)}];")
        lines.append("  }")
    for a in plan.actions:
        lines.extend(
            f"  {dot_string(d)} -> {dot_string(a.id)};" for d in a.depends_on if d in index
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _serial_note(plan: Plan) -> str:
    """Say what parallel migrations save, when they save anything."""
    serial = plan.serial_seconds()
    if abs(serial - plan.estimate_seconds()) < 1:
        return " (one action at a time)"
    return f" (migrations in parallel; {duration(serial)} one action at a time)"
