"""The benchmark's tables: one per configuration set or scenario, with
the machine, the conditions, the ratios and the PASS/MISS lines of the
speed targets (fastvae.bench.scenarios)."""

from __future__ import annotations

from fastvae.bench import scenarios as sc

# Column names of the implementations.
_NAMES = {
    "fastvae": "fastvae",
    sc.FASTVAE_1T: "fastvae 1 thread",
    "numpy": "NumPy",
    "torch": "PyTorch",
    "jax": "JAX",
}


def _ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a and b else "–"


def format_table(report: dict) -> str:
    """The report as a markdown table, one row per configuration and threads."""
    by_key: dict[tuple, dict] = {}
    impls: list[str] = []
    for r in report["results"]:
        by_key.setdefault((r["config"], r["threads"]), {})[r["impl"]] = r
        if r["impl"] not in impls:
            impls.append(r["impl"])
    others = [i for i in impls if i != "fastvae"]
    head = (
        ["config", "threads"]
        + [f"{i} samples/s" for i in impls]
        + [f"fastvae / {i}" for i in others]
        + ["fastvae FLOP eff.", "peak RSS MB"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (config, threads), row in by_key.items():
        cells = [config, str(threads)]
        for i in impls:
            r = row.get(i)
            if r is None or r["error"]:
                cells.append(r["error"] if r else "–")
            else:
                cells.append(f"{r['samples_per_second']:,.0f}")
        fv = row.get("fastvae", {}).get("samples_per_second")
        for i in others:
            cells.append(_ratio(fv, row.get(i, {}).get("samples_per_second")))
        rate = row.get("fastvae", {}).get("gemm_limit_gflops")
        flops = row.get("fastvae", {}).get("flops_per_sample")
        cells.append(
            f"{100 * fv * flops / (rate * 1e9):.0f}%" if fv and rate and flops else "–"
        )
        cells.append(
            " / ".join(
                f"{i} {row[i]['peak_rss_mb']:.0f}"
                for i in impls
                if i in row and row[i]["peak_rss_mb"]
            )
        )
        lines.append("| " + " | ".join(cells) + " |")
    m = report["machine"]

    def rate_range(key, float64):
        rates: dict[int, list[float]] = {}
        for r in report["results"]:
            if (
                r["impl"] == "fastvae"
                and r.get(key)
                and r["config"].endswith("float64") == float64
            ):
                rates.setdefault(r["threads"], []).append(r[key])
        return (
            ", ".join(
                f"{t} thread(s) {min(g):.0f}-{max(g):.0f} GFLOP/s"
                for t, g in sorted(rates.items())
            )
            or "not measured"
        )

    rates = (
        f"scipy sgemm {rate_range('sgemm_gflops', False)}; fastvae's own GEMM "
        f"{rate_range('own_gemm_gflops', False)}"
    )
    if any(r["config"].endswith("float64") for r in report["results"]):
        rates += (
            f"; float64 rows against dgemm {rate_range('sgemm_gflops', True)} and "
            f"fastvae's own float64 GEMM {rate_range('own_gemm_gflops', True)}"
        )
    lines.append("")
    lines.append(
        f"{m['date']}, {m['cpu']}, {m['cores']} cores; Python {m['python']}, NumPy "
        f"{m['numpy']}, SciPy {m['scipy']}, fastvae {m['fastvae']}; BLAS: "
        f"{'; '.join(m['blas'])}; training GEMM: {m.get('gemm', 'blas')}. "
        f"GEMM rates (2048^3 in the row's dtype, measured beside each row): {rates}. "
        "Median of "
        f"{report['rounds']} alternated rounds of {report['seconds_per_round']} s. "
        "FLOP efficiency = GEMM FLOPs per step / step time / the faster GEMM rate."
        + (
            f" OPENBLAS_CORETYPE={m['openblas_coretype']}."
            if m.get("openblas_coretype")
            else ""
        )
        + _conditions(report)
    )
    lines += [f"\nWarning: {w}." for w in m.get("warnings", [])]
    lines += _isa_warnings(report["results"])
    return "\n".join(lines)


def _conditions(report: dict) -> str:
    isa, busy = report.get("isa", "native"), report.get("busy", 0)
    out = f" Every implementation capped at {isa.upper()}." if isa != "native" else ""
    if busy:
        out += f" {busy} busy process(es) spinning during the measurements."
    return out


def _isa_warnings(results: list[dict]) -> list[str]:
    seen = []
    for r in results:
        msg = r.get("isa_error")
        if msg and msg not in seen:
            seen.append(msg)
    return [f"\nWarning: ISA cap not in effect: {m}." for m in seen]


def heading(isa: str, busy: int, name: str | None = None) -> str:
    """The line printed above a table: the conditions it was measured in."""
    what = f"ISA {isa}" + (
        " (as the machine and environment are)"
        if isa == "native"
        else " (every implementation capped)"
    )
    what += f", {busy} busy process(es)"
    return f"## {'Scenario ' + name + ': ' if name else ''}{what}"


def scenario_rates(scenario_report: dict) -> dict[str, dict[str, float | None]]:
    """config name -> column key -> samples/s."""
    rates: dict[str, dict[str, float | None]] = {}
    for r in scenario_report["results"]:
        rates.setdefault(r["config"], {})[r["label"]] = r["samples_per_second"]
    return rates


def format_scenario(scenario_report: dict) -> str:
    """A scenario's table (samples/s and the ratios the targets use), its
    conditions, and one PASS/MISS line per target."""
    s = scenario_report["scenario"]
    labels: list[str] = []
    by_config: dict[str, dict[str, dict]] = {}
    for r in scenario_report["results"]:
        by_config.setdefault(r["config"], {})[r["label"]] = r
        if r["label"] not in labels:
            labels.append(r["label"])

    def name(label, row=None):
        r = (row or {}).get(label)
        if label == "fastvae" and r and r.get("threads_used"):
            return f"fastvae ({r['threads_used']} threads)"
        return _NAMES.get(label, label)

    first = next(iter(by_config.values()), {})
    head = (
        ["config"]
        + [f"{name(lb, first)} samples/s" for lb in labels]
        + [
            f"{_NAMES[a]} / {_NAMES[b]}".replace(
                " / fastvae 1 thread", " / own 1 thread"
            )
            for a, b in sc.RATIOS.values()
        ]
    )
    lines = [
        heading(s["isa"], s["busy"], s["name"]),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    rates = scenario_rates(scenario_report)
    for config, row in by_config.items():
        cells = [config]
        for lb in labels:
            r = row.get(lb)
            if r is None or r["error"]:
                cells.append(r["error"] if r else "–")
            else:
                cells.append(f"{r['samples_per_second']:,.0f}")
        for key in sc.RATIOS:
            v = sc.ratio(rates[config], key)
            cells.append(f"{v:.2f}x" if v else "–")
        lines.append("| " + " | ".join(cells) + " |")
    load = scenario_report.get("load_average_start")
    lines.append("")
    lines.append(
        f"Medians of {scenario_report['rounds']} alternated rounds of "
        f"{scenario_report['seconds_per_round']} s; libraries at their default thread "
        "counts unless marked 1 thread"
        + (f"; load average at the start {load[0]:.2f}" if load else "")
        + "."
        + _conditions(scenario_report)
    )
    lines += _isa_warnings(scenario_report["results"])
    if scenario_report.get("targets"):
        lines.append("")
        lines.append(sc.format_targets(scenario_report["targets"]))
    return "\n".join(lines)
