"""Reports of controllability studies: plotly figures, CSV tables, JSON and a standalone HTML page.

Takes the dict of `alignx.explore.control.sweep` or `swap_study` as it is, so a report can be
rebuilt from a saved result JSON. The HTML page inlines plotly.js (no network needed to view it)
and records the model, the adapters, the seed, the git commit, the exact settings and the command
that reruns the study.

    from alignx.explore.report import figures, write_report
    figs = figures(result)                      # {"margins": go.Figure, ...}
    paths = write_report(result, "out/report")  # {"html": ..., "json": ..., "csv": [...]}

Rebuild a report from a result file: ``python -m alignx.explore.report result.json out/report``.
"""

from __future__ import annotations

import csv
import html
import io
import json
import shlex
import sys
from pathlib import Path

import plotly.graph_objects as go

GOAL_DIRECTIONAL = 0.8  # the goal for the swap study's directional rate
VARIANT_NAMES = {"swap": "profile swapped", "differing_off": "differing labels off",
                 "single_label": "one label off"}


# ----------------------------------------------------------------------------- figures


def _series_name(effect: dict) -> str:
    return f"dim {effect['target']} · {effect['method'].upper()}"


def _by_value_figure(result: dict, key: str, title: str, ytitle: str) -> go.Figure | None:
    fig = go.Figure()
    for e in result["effects"]:
        xs = [float(v) for v in e["by_value"]]
        ys = [e["by_value"][v][key] for v in e["by_value"]]
        if all(y is None for y in ys):
            continue
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=_series_name(e),
                                 hovertext=" · ".join(e["labels"])))
    if not fig.data:
        return None
    fig.update_layout(title=title, xaxis_title="swept value (0 = negative pole, 1 = positive pole)",
                      yaxis_title=ytitle, template="plotly_white", height=380, legend_title_text="target")
    return fig


def sweep_figures(result: dict) -> dict[str, go.Figure]:
    """Line plots over the swept values (probe shift, pair margins, length, readability) and the
    flip rate per target and method; figures with no data are left out."""
    out = {}
    specs = [("probes", "probe_shift", "Pole-probe log-ratio shift from the lowest value",
              "Δ [log p(positive probe) − log p(negative probe)]"),
             ("margins", "mean_margin", "Mean chosen − rejected margin on the pairs", "margin (implicit reward)"),
             ("words", "words", "Output length", "words"),
             ("readability", "flesch_reading_ease", "Readability of the outputs", "Flesch reading ease")]
    for name, key, title, ytitle in specs:
        fig = _by_value_figure(result, key, title, ytitle)
        if fig is not None:
            out[name] = fig
    flips = [e for e in result["effects"] if e["flip_rate"] is not None]
    if flips:
        fig = go.Figure(go.Bar(x=[_series_name(e) for e in flips], y=[e["flip_rate"] for e in flips],
                               text=[f"{e['flip_rate']:.0%} of {e['n_pairs']}" for e in flips]))
        fig.update_layout(title="Preference flip rate (margin sign at the lowest vs the highest value)",
                          yaxis=dict(title="flip rate", range=[0, 1]), template="plotly_white", height=360)
        out["flips"] = fig
    return out


def swap_figures(result: dict) -> dict[str, go.Figure]:
    """The swap study: rates per variant (with the 80% goal), original vs swapped margins, and the
    single-label edits' directional rate per label."""
    out = {}
    variants = list(result["summary"])
    names = [VARIANT_NAMES.get(v, v) for v in variants]
    fig = go.Figure()
    for key, label in [("directional_rate", "directional rate"), ("flip_rate", "flip rate")]:
        ys = [result["summary"][v][key] for v in variants]
        errors = [result["summary"][v].get(f"{key}_stderr") for v in variants]  # clustered by pair, when known
        bar = go.Bar(x=names, y=ys, name=label, text=[f"{y:.0%}" if y is not None else "" for y in ys])
        if any(e is not None for e in errors):
            bar.error_y = dict(type="data", array=[e or 0.0 for e in errors], visible=True)
        fig.add_trace(bar)
    fig.add_hline(y=GOAL_DIRECTIONAL, line_dash="dash", annotation_text="goal: 80% directional")
    fig.update_layout(title="Does changing the profile move the margin toward the rejected response?",
                      barmode="group", yaxis=dict(title="fraction of pairs", range=[0, 1]), template="plotly_white",
                      height=380)
    out["rates"] = fig
    ex = result["examples"]
    if ex:
        fig = go.Figure()
        for persona in sorted({e["ground_truth_persona"] or "" for e in ex}):
            sel = [e for e in ex if (e["ground_truth_persona"] or "") == persona]
            fig.add_trace(go.Scatter(x=[e["margin/original"] for e in sel], y=[e["margin/swap"] for e in sel],
                                     mode="markers", name=persona[:48] or "(none)",
                                     hovertext=[e["prompt"][:80] for e in sel]))
        lo = min(min(e["margin/original"], e["margin/swap"]) for e in ex)
        hi = max(max(e["margin/original"], e["margin/swap"]) for e in ex)
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="no change",
                                 line=dict(dash="dot", color="gray")))
        fig.update_layout(title="Margin under the own profile vs the swapped profile (below the diagonal: "
                                "toward rejected)", xaxis_title="own profile", yaxis_title="swapped profile",
                          template="plotly_white", height=460)
        out["scatter"] = fig
    labels = [(k, v) for k, v in result.get("per_label", {}).items() if v["n"]][:30]
    if labels:
        fig = go.Figure(go.Bar(x=[v["directional_rate"] for _, v in labels], y=[k[:60] for k, _ in labels],
                               orientation="h", text=[f"n={v['n']}" for _, v in labels]))
        fig.update_layout(title="One label turned off: directional rate per label (most frequent first)",
                          xaxis=dict(title="directional rate", range=[0, 1]), yaxis=dict(autorange="reversed"),
                          template="plotly_white", height=max(320, 22 * len(labels) + 120))
        out["labels"] = fig
    return out


def figures(result: dict) -> dict[str, go.Figure]:
    """The figures of a sweep or swap-study result, by name."""
    return swap_figures(result) if result.get("kind") == "swap" else sweep_figures(result)


# ----------------------------------------------------------------------------- tables


def _csv(rows: list[dict]) -> str:
    if not rows:
        return ""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v
                         for k, v in r.items()})
    return buf.getvalue()


def effect_rows(result: dict) -> list[dict]:
    """A sweep's effects flattened to one row per (target, method, value)."""
    rows = []
    for e in result["effects"]:
        for value, stats in e["by_value"].items():
            rows.append({"target": e["target"], "method": e["method"], "labels": "; ".join(e["labels"]),
                         "value": float(value), **stats, "flip_rate": e["flip_rate"], "n_pairs": e["n_pairs"]})
    return rows


def summary_rows(result: dict) -> list[dict]:
    """A swap study's summary: one row per variant (and per persona within it)."""
    rows = []
    for variant, s in result["summary"].items():
        rows.append({"variant": variant, "persona": "all", **{k: v for k, v in s.items() if k != "by_persona"}})
        for persona, p in s.get("by_persona", {}).items():
            rows.append({"variant": variant, "persona": persona, **p})
    return rows


def tables(result: dict) -> dict[str, str]:
    """CSV texts by file name."""
    if result.get("kind") == "swap":
        examples = [{k: v for k, v in e.items()} for e in result["examples"]]
        return {"summary.csv": _csv(summary_rows(result)),
                "per_label.csv": _csv([{"label": k, **v} for k, v in result.get("per_label", {}).items()]),
                "examples.csv": _csv(examples)}
    return {"grid.csv": _csv(result["grid"]), "effects.csv": _csv(effect_rows(result)),
            "probes.csv": _csv(result["probes"]), "pairs.csv": _csv(result["pairs"])}


# ----------------------------------------------------------------------------- rerun


def rerun_command(result: dict, result_path: str = "result.json") -> str:
    """The command line that reruns the study (from its recorded argv, or rebuilt from the settings)."""
    config = result["config"]
    if config.get("argv"):
        return shlex.join(config["argv"])
    bc = config.get("backbone_config") or {}
    backbone = ["--model", bc.get("model", "embedded"), "--precision", bc.get("precision", "auto"),
                "--template", bc.get("template", "auto")]
    if bc.get("gguf_file"):
        backbone += ["--gguf-file", bc["gguf_file"]]
    for name, folder in (bc.get("adapters") or {}).items():
        backbone += ["--adapter", f"{name}={folder}"]
    if result.get("kind") == "swap":
        args = ["alignx", "control", "swap", "--benchmark", config.get("benchmark", ""), "--data",
                config.get("data", ""), "--seed", str(config["seed"]), "--beta", str(config["beta"])]
        if config.get("split"):
            args += ["--split", config["split"]]
        if config.get("limit") is not None:
            args += ["--limit", str(config["limit"])]
        if not config.get("single_label", True):
            args.append("--no-single-label")
        return shlex.join(args + backbone)
    return shlex.join(["alignx", "control", "sweep", "--from-report", result_path, *backbone])


# ----------------------------------------------------------------------------- HTML


def _table(rows: list[dict], columns: list[str], limit: int | None = None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for r in rows[:limit]:
        cells = []
        for c in columns:
            v = r.get(c)
            v = f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))
            cells.append(f"<td>{html.escape(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.3em .5em;
vertical-align:top;text-align:left}th{background:#f3f3f3}pre,code{background:#f6f6f6}pre{padding:.6em;
overflow-x:auto;white-space:pre-wrap}td{max-width:420px;white-space:pre-wrap}"""


def html_report(result: dict, figs: dict[str, go.Figure] | None = None, result_path: str = "result.json") -> str:
    """A standalone HTML page: what ran (model, adapters, seed, commit, settings), the rerun
    command, the summary tables and the figures (plotly.js inlined once)."""
    figs = figures(result) if figs is None else figs
    config = result["config"]
    kind = result.get("kind", "sweep")
    title = "Persona-swap study" if kind == "swap" else "Preference sweep"
    what = [("kind", kind), ("model", config.get("backbone", {}).get("model")),
            ("precision", config.get("backbone", {}).get("precision")),
            ("template", config.get("backbone", {}).get("template")),
            ("adapters", json.dumps(config.get("adapters", {}))), ("seed", config.get("seed")),
            ("git commit", config.get("git_commit")), ("alignx", config.get("alignx_version")),
            ("control version", config.get("control_version")), ("seconds", config.get("seconds"))]
    if kind == "swap":
        what += [(k, config.get(k)) for k in ("benchmark", "data", "data_sha256", "split", "metric", "reference",
                                               "beta", "n_studied", "rows")]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>alignx · {title}</title>"
             f"<style>{CSS}</style></head><body><h1>alignx · {title}</h1>",
             "<h2>What ran</h2>", _table([{"field": k, "value": v} for k, v in what], ["field", "value"]),
             "<h2>Rerun</h2>", f"<pre>{html.escape(rerun_command(result, result_path))}</pre>"]
    if kind == "swap":
        parts += ["<h2>Summary</h2>", _table(summary_rows(result),
                                             ["variant", "persona", "n", "n_clusters", "directional_rate",
                                              "directional_rate_stderr", "flip_rate",
                                              "flip_to_rejected_rate", "accuracy_before", "accuracy_after",
                                              "mean_delta"])]
    else:
        parts += ["<h2>Effects</h2>", _table(effect_rows(result),
                                             ["target", "method", "labels", "value", "probe_log_ratio", "probe_shift",
                                              "mean_margin", "pair_accuracy", "words", "flesch_reading_ease",
                                              "flip_rate", "n_pairs"])]
    parts.append("<h2>Figures</h2>")
    first = True
    for fig in figs.values():
        parts.append(fig.to_html(full_html=False, include_plotlyjs=True if first else False))
        first = False
    if kind != "swap":
        parts += ["<h2>Output grid</h2>", _table(result["grid"], ["target", "method", "value", "pole", "prompt",
                                                                   "profile", "text", "words",
                                                                   "flesch_reading_ease"])]
    exact = {"settings": result["settings"], "config": config} if "settings" in result else {"config": config}
    parts += ["<h2>Exact settings</h2>", "<details open><summary>settings and configuration (JSON)</summary><pre>",
              html.escape(json.dumps(exact, indent=2, ensure_ascii=False)), "</pre></details></body></html>"]
    return "\n".join(parts)


def write_report(result: dict, folder: str | Path) -> dict:
    """Write ``result.json``, the CSV tables and ``report.html`` into ``folder`` (created).

    Returns:
        `dict`: ``{"html": Path, "json": Path, "csv": [Path, ...]}``.
    """
    from alignx.learn.evaluate import write_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / "result.json"
    write_json(result, json_path)
    csv_paths = []
    for name, text in tables(result).items():
        if text:
            (folder / name).write_text(text, encoding="utf-8")
            csv_paths.append(folder / name)
    html_path = folder / "report.html"
    html_path.write_text(html_report(result, result_path=str(json_path)), encoding="utf-8")
    return {"html": html_path, "json": json_path, "csv": csv_paths}


def main(argv: list[str] | None = None) -> int:
    """``python -m alignx.explore.report RESULT.json FOLDER``: rebuild a report from a saved result."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m alignx.explore.report RESULT.json FOLDER", file=sys.stderr)
        return 2
    result = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    print(write_report(result, argv[1])["html"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
