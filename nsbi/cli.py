"""``nsbi`` command line: start an analysis config from ntuples and check its inputs; inspect,
fit and scan nsbi or pyhf workspaces.

    nsbi init NTUPLE.root [...] [--tree NAME] [-o CONFIG] [--force]   (commented config skeleton)
    nsbi check CONFIG [-d DIR] [--output json] [-o FILE]     (every input file, tree, branch at once)
    nsbi inspect WORKSPACE
    nsbi fit WORKSPACE [--dataset NAME] [--measurement NAME] [--minos] [--output json] [-o FILE]
    nsbi scan WORKSPACE [--points N] [--range LO HI] [--mode profile|stat_only|stat_only_nominal]
    nsbi check-pyhf WORKSPACE          (binned part vs pyhf)

WORKSPACE is an nsbi workspace JSON (``"version"`` + typed channels) or a pyhf workspace
JSON (detected automatically; ``--measurement`` selects the measurement, default the first).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nsbi.io import json_text, write_json

__all__ = ["main", "load_any"]


def load_any(path: str, measurement: str | None = None):
    """Load an nsbi workspace, or convert a pyhf workspace JSON."""
    from nsbi import workspace as W

    p = Path(path)
    try:
        spec = json.loads(p.read_text())
    except FileNotFoundError:
        raise SystemExit(f"nsbi: no such file: {path}") from None
    except json.JSONDecodeError as e:
        raise SystemExit(f"nsbi: {path}: not valid JSON: {e}") from None
    is_pyhf = isinstance(spec, dict) and "channels" in spec and all("type" not in c for c in spec.get("channels", []))
    if is_pyhf:
        return W.from_pyhf(spec, measurement=measurement), "pyhf"
    return W.load(p), "nsbi"


def _fmt_table(names, values, errors) -> str:
    w = max([len(n) for n in names] + [9])
    lines = [f"{'parameter':<{w}}  {'value':>12}  {'error':>10}"]
    for n, v, e in zip(names, values, errors):
        lines.append(f"{n:<{w}}  {v:>12.6g}  {e:>10.4g}")
    return "\n".join(lines)


def _write(out: dict, args) -> None:
    if args.output_file:
        write_json(out, args.output_file, indent=1, sort_keys=False)
    if args.output == "json":
        print(json_text(out, indent=1, sort_keys=False))


def cmd_inspect(args) -> int:
    ws, kind = load_any(args.workspace, args.measurement)
    model = ws.model(dataset=args.dataset, measurement=args.measurement)
    info = {
        "source": kind,
        "channels": [
            {
                "name": c["name"],
                "type": c["type"],
                "samples": [s["name"] for s in c["samples"]],
                **({"bins": len(c["samples"][0]["data"])} if c["type"] == "binned" else {}),
            }
            for c in ws.spec["channels"]
        ],
        "datasets": ws.datasets,
        "measurements": ws.measurements,
        "poi": model.poi_name,
        "parameters": [
            {
                "name": n,
                "init": float(model.init[i]),
                "bounds": list(model.bounds[i]),
                "fixed": bool(model.fixed[i]),
                "constrained": bool(model.constrained[i]),
            }
            for i, n in enumerate(model.par_names)
        ],
    }
    if args.output == "json" or args.output_file:
        _write(info, args)
    if args.output != "json":
        print(f"workspace: {args.workspace} ({kind})")
        for c in info["channels"]:
            extra = f", {c['bins']} bins" if "bins" in c else ""
            print(f"  channel {c['name']} [{c['type']}{extra}]: samples {', '.join(c['samples'])}")
        print(
            f"  datasets: {', '.join(ws.datasets)}; measurements: {', '.join(ws.measurements)}; POI: {model.poi_name}"
        )
        print(
            f"  {model.npars} parameters ({int(model.constrained.sum())} constrained, {int(model.fixed.sum())} fixed)"
        )
    return 0


def cmd_fit(args) -> int:
    from nsbi import fit as F

    ws, _ = load_any(args.workspace, args.measurement)
    model = ws.model(dataset=args.dataset, measurement=args.measurement)
    r = F.fit(model, minos=bool(args.minos), strategy=args.strategy, tolerance=args.tolerance, errors=args.errors)
    out = {
        "workspace": str(args.workspace),
        "dataset": ws.dataset(args.dataset)["name"],
        "measurement": model.measurement_name,
        **r.to_dict(),
    }
    if args.output == "json" or args.output_file:
        _write(out, args)
    if args.output != "json":
        print(_fmt_table(r.names, r.values, r.errors))
        print(f"-2lnL at minimum: {r.twice_nll:.10g}   valid: {r.status['valid']}")
    return 0 if r.status["valid"] else 2


def cmd_scan(args) -> int:
    import numpy as np

    from nsbi import fit as F

    ws, _ = load_any(args.workspace, args.measurement)
    model = ws.model(dataset=args.dataset, measurement=args.measurement)
    values = np.linspace(args.range[0], args.range[1], args.points) if args.range else None
    s = F.scan(model, values=values, poi=args.poi, mode=args.mode, npoints=args.points)
    out = {"workspace": str(args.workspace), **s.to_dict()}
    if args.output == "json" or args.output_file:
        _write(out, args)
    if args.output != "json":
        print(f"{s.poi} best fit {s.best:.6g}")
        for k, (lo, hi) in s.intervals.items():
            print(f"  {k}% CL: [{lo:.6g}, {hi:.6g}]")
    if args.plot:
        from nsbi.plotting.fit_plots import plot_scan

        plot_scan(s, args.plot)
    return 0


def cmd_check_pyhf(args) -> int:
    from nsbi.pyhf_check import PyhfMismatch, compare

    ws, _ = load_any(args.workspace, args.measurement)
    try:
        rep = compare(ws, measurement=args.measurement, dataset=args.dataset)
    except PyhfMismatch as e:
        rep = e.report
    if args.output == "json" or args.output_file:
        _write(rep, args)
    if args.output != "json":
        print("pyhf agreement: OK" if rep["ok"] else "pyhf DISAGREES:\n  " + "\n  ".join(rep["failures"]))
    return 0 if rep["ok"] else 1


def cmd_check(args) -> int:
    """Check every input of an analysis config at once, before any job runs: all problems
    (missing or unreadable files, missing trees and branches, bad expressions), each naming
    the config key and the file. A config that does not validate is one problem."""
    import contextlib

    from nsbi.check import ERROR, Problem, check_config, format_report
    from nsbi.config import ConfigError, load
    from nsbi.init import PLACEHOLDER, placeholders

    left = placeholders(Path(args.config).read_text()) if Path(args.config).is_file() else []
    try:
        if left:  # a skeleton of `nsbi init` not filled in yet
            lines = ", ".join(map(str, left))
            raise ConfigError(f"config file '{args.config}': {PLACEHOLDER} left on line(s) {lines} (from `nsbi init`)")
        cfg = load(args.config)
    except ConfigError as err:
        problems = [Problem(str(err))]
    else:
        if not Path(args.directory).is_dir():
            problems = [Problem(f"--directory '{args.directory}' is not a directory")]
        else:
            with contextlib.chdir(args.directory):  # relative input paths are read from there
                problems = check_config(cfg)
    errors = [p.to_dict() for p in problems if p.severity == ERROR]
    notes = [p.to_dict() for p in problems if p.severity != ERROR]
    out = {"config": str(args.config), "ok": not errors, "problems": errors, "notes": notes}
    if args.output == "json" or args.output_file:
        _write(out, args)
    if args.output != "json":
        print(f"config: {args.config}")
        print(format_report(problems))
    return 0 if not errors else 1


def cmd_init(args) -> int:
    """Write a commented config skeleton from ROOT files (stdout without -o)."""
    from nsbi.init import placeholders, skeleton, write_skeleton

    if not args.output_file:
        sys.stdout.write(skeleton(args.files, tree=args.tree))
        return 0
    out = write_skeleton(args.files, args.output_file, tree=args.tree, force=args.force)
    lines = placeholders(out.read_text())
    todo = f"replace FILL_ME on line(s) {', '.join(map(str, lines))} and " if lines else ""
    print(f"nsbi init: wrote {out}: {todo}review the TODOs", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nsbi", description="NSBI statistical analysis tools")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("workspace", help="nsbi workspace JSON or pyhf workspace JSON")
        sp.add_argument("--measurement", default=None, help="measurement name (default: first)")
        sp.add_argument("--dataset", default=None, help="dataset name (default: 'observed' if present, else first)")
        sp.add_argument("--output", choices=["text", "json"], default="text", help="print text or JSON")
        sp.add_argument("-o", "--output-file", default=None, help="also write the JSON result to this file")

    sp = sub.add_parser("inspect", help="summarise a workspace")
    common(sp)
    sp.set_defaults(func=cmd_inspect)
    sp = sub.add_parser("fit", help="maximum-likelihood fit (MIGRAD + HESSE)")
    common(sp)
    sp.add_argument("--minos", action="store_true", help="MINOS interval for the POI")
    sp.add_argument("--strategy", type=int, default=1)
    sp.add_argument("--tolerance", type=float, default=0.001)
    sp.add_argument(
        "--errors",
        choices=["hesse", "exact"],
        default="hesse",
        help="Minuit HESSE (as pyhf) or the exact autodiff Hessian",
    )
    sp.set_defaults(func=cmd_fit)
    sp = sub.add_parser("scan", help="profile-likelihood scan of the POI")
    common(sp)
    sp.add_argument("--poi", default=None)
    sp.add_argument("--points", type=int, default=21)
    sp.add_argument("--range", type=float, nargs=2, default=None, metavar=("LO", "HI"))
    sp.add_argument("--mode", choices=["profile", "stat_only", "stat_only_nominal"], default="profile")
    sp.add_argument("--plot", default=None, help="write a scan plot (pdf/png)")
    sp.set_defaults(func=cmd_scan)
    sp = sub.add_parser("check-pyhf", help="compare the binned likelihood with pyhf")
    common(sp)
    sp.set_defaults(func=cmd_check_pyhf)
    sp = sub.add_parser("check", help="check every input of an analysis config (files, trees, branches)")
    sp.add_argument("config", help="analysis config YAML (e.g. config/config.yaml)")
    sp.add_argument(
        "-d", "--directory", default=".", help="the workflow's working directory: relative input paths are read there"
    )
    sp.add_argument("--output", choices=["text", "json"], default="text", help="print text or JSON")
    sp.add_argument("-o", "--output-file", default=None, help="also write the JSON result to this file")
    sp.set_defaults(func=cmd_check)
    sp = sub.add_parser("init", help="write a commented analysis config skeleton from ROOT ntuples")
    sp.add_argument("files", nargs="+", metavar="FILE", help="ROOT files, one sample each")
    sp.add_argument("--tree", default=None, help="tree to read (required where a file has several)")
    sp.add_argument("-o", "--output-file", default=None, help="write the config here (default: stdout)")
    sp.add_argument("--force", action="store_true", help="overwrite an existing output file")
    sp.set_defaults(func=cmd_init)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError) as e:
        print(f"nsbi {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
