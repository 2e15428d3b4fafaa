"""The build summary: a JSON document for machines and a Markdown page for people."""

from __future__ import annotations

from typing import Any


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in counts.items()) or "-"


def render_markdown(summary: dict[str, Any]) -> str:
    """A readable page: sources, drops by reason, outputs per kind, modules."""
    lines = ["# build_datasets summary", ""]
    totals = summary["totals"]
    lines += [
        f"- rows read: {totals['rows_read']}, records kept: {totals['records_kept']}, "
        f"records dropped: {totals['records_dropped']}",
        f"- duplicates removed: {summary['duplicates']['duplicate_exact']} exact, "
        f"{summary['duplicates']['duplicate_near']} near",
        "",
        "## Sources",
        "",
        "| source | kind | adapter | read | kept | dropped | reasons | redacted | note |",
        "| --- | --- | --- | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for source in summary["sources"]:
        notes = [_reasons(source["notes"])] if source.get("notes") else []
        note = source["error"] or ", ".join((["capped"] if source["capped"] else []) + notes)
        lines.append(
            "| "
            + " | ".join(
                _cell(value)
                for value in (
                    source["name"],
                    source["kind"],
                    source["adapter"],
                    source["read"],
                    source["kept"],
                    source["dropped_total"],
                    _reasons(source["dropped"]),
                    _reasons(source["redacted"]),
                    note,
                )
            )
            + " |"
        )
    lines += ["", "## Outputs per kind", "", "| kind | train | val |", "| --- | ---: | ---: |"]
    for kind, counts in summary["outputs"].items():
        lines.append(f"| {kind} | {counts['train']} | {counts['val']} |")
    code = summary["code"]
    lines += [
        "",
        "## Code modules",
        "",
        f"- roots: {', '.join(code['roots'])}; files mined: {code['files']}; "
        f"facts: {_reasons(code['facts'])}",
        f"- records dropped: {_reasons(code['dropped'])}",
    ]
    if code["parse_errors"]:
        lines.append(f"- files that did not parse: {', '.join(code['parse_errors'])}")
    lines += ["", "| module | train | val | status |", "| --- | ---: | ---: | --- |"]
    for module, info in summary["modules"].items():
        lines.append(f"| {module} | {info['train']} | {info['val']} | {info['status']} |")
    lines.append("")
    return "\n".join(lines)
