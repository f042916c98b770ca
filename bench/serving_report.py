"""Render a serving benchmark results dict as Markdown."""

from __future__ import annotations


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def markdown(results: dict) -> str:
    m = results["machine"]
    load = ", ".join(f"{x:.2f}" for x in m["loadavg_at_start"])
    lines = [
        f"# Serving benchmark {results['date']} ({results['mode']})",
        "",
        f"Command: `{results['command']}`  ",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_gib']} GiB, {m['os']}, kernel {m['kernel']}, "
        f"Python {m['python']}; {m['wrk']}; load average at start {load}  ",
        "Packages: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v) + f"  \nCommit: {m['commit']}",
        "",
        f"Each run: wrk -t1 on the same machine, {results['warmup_s']} s warm-up then "
        f"{results['duration_s']} s measured; 2 sync gunicorn workers per server, "
        "one server at a time on 127.0.0.1.",
        "",
    ]
    lines += _calibration(results.get("calibration") or {})
    lines += [
        "## Targets (issue 3, Speed)",
        "",
        "Result: against the limit as the issue states it. Scaled: the limit times the machine factor",
        "(latency limits divided by it), i.e. the same target on the machine the issue was written on.",
        "",
        "| server | target | value | limit | from | result | scaled limit | scaled result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in results["targets"]:
        digits = 2 if t["value"] is not None and t["value"] < 100 else 0
        scaled = t.get("scaled_limit")
        lines.append(
            f"| {t['server']} | {t['target']} | {_num(t['value'], digits)} | {t['limit']} | {t['source']} "
            f"| {_verdict(t['pass'])} | {_num(scaled, 2 if scaled is not None and scaled < 100 else 0)} "
            f"| {'—' if t.get('pass_scaled') is None else _verdict(t['pass_scaled'])} |"
        )
    lines += ["", "## Ratios ours (logging off) / baseline", "", "| run | ratio |", "|---|---|"]
    lines += [f"| {k} | {v:,.1f}× |" for k, v in results["ratios"].items()]
    lines += [
        "",
        "## Runs",
        "",
        "| server | run | conns | req/s | images/s | p50 ms | p90 ms | p99 ms | errors | server CPU µs/req | wrk CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, server in results["servers"].items():
        for run, r in server.get("runs", {}).items():
            if r.get("invalid"):
                lines.append(f"| {name} | {run} | — | invalid: {r['invalid']} | | | | | | | |")
                continue
            lines.append(
                f"| {name} | {run} | {r['connections']} | {_num(r['requests_per_s'])} "
                f"| {_num(r['images_per_s'])} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} "
                f"| {r['errors_total']} "
                f"| {_num(r.get('server_cpu_us_per_request'))} | {r['wrk_cpu_share']:.0%} |"
            )
    lines += [
        "",
        "## Processes",
        "",
        "| server | start to ready s (2 workers) | worker respawn to ready s (median) | worker RSS MB "
        "| worker PSS MB |",
        "|---|---|---|---|---|",
    ]
    for name, server in results["servers"].items():
        workers = server.get("workers", [])
        start = server.get("worker_start", {})
        lines.append(
            f"| {name} | {_num(server.get('ready_s'), 2)} | {_num(start.get('respawn_ready_s_median'), 2)} "
            f"| {', '.join(_num(w['rss_mb'], 1) for w in workers) or '—'} "
            f"| {', '.join(_num(w['pss_mb'], 1) for w in workers) or '—'} |"
        )
    if results.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in results["notes"]]
    return "\n".join(lines) + "\n"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "**FAIL**"


def _calibration(cal: dict) -> list[str]:
    if not cal.get("reference_today_req_s"):
        return []
    lines = [
        "## Machine calibration",
        "",
        "The minimal Flask + LiteRT app the targets were set from (bench/reference_app.py), run here",
        "alongside ours, against its figures in shared/notes/serving-performance.md (2026-11-24).",
        "",
        "| run | reference then req/s | reference now req/s | machine factor | ours / reference now |",
        "|---|---|---|---|---|",
    ]
    then, now = cal["reference_notes_req_s"], cal["reference_today_req_s"]
    for run in now:
        factor = cal["factor_per_run"].get(run)
        versus = cal["ours_vs_reference"].get(run)
        lines.append(
            f"| {run} | {_num(then.get(run))} | {_num(now[run])} | {_num(factor, 2)} "
            f"| {'—' if versus is None else f'{versus:.2f}×'} |"
        )
    factor = cal.get("factor")
    lines += ["", f"Machine factor (from png-c16-fixed): {_num(factor, 2)}.", ""]
    return lines
