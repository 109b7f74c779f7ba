"""``nsbi`` command line: start an analysis config from ntuples and check its inputs; inspect,
fit and scan nsbi or pyhf workspaces.

    nsbi init NTUPLE.root [...] [--tree NAME] [-o CONFIG] [--force]   (commented config skeleton)
    nsbi check CONFIG [-d DIR] [--output json] [-o FILE]     (every input file, tree, branch at once)
    nsbi inspect WORKSPACE
    nsbi fit WORKSPACE [--dataset NAME] [--measurement NAME] [--minos] [--output json] [-o FILE]
    nsbi scan WORKSPACE [--poi NAME [NAME2]] [--points N] [--range LO HI [--range LO2 HI2]]
                        [--mode profile|stat_only|stat_only_nominal]   (two POIs: 2-D scan, contours)
    nsbi limit WORKSPACE [--cl 0.95] [--test-stat qtilde|q] [--toys N] [--plot FILE]   (CLs limits)
    nsbi significance WORKSPACE [--poi-value 1] [--toys N]   (q0, p0, Z)
    nsbi check-pyhf WORKSPACE          (binned part vs pyhf)

WORKSPACE is an nsbi workspace JSON (``"version"`` + typed channels) or a pyhf workspace
JSON (detected automatically; ``--measurement`` selects the measurement, default the first;
``--patchset FILE --point NAME`` and ``--patch FILE`` patch a published background-only
workspace as pyhf does, :mod:`nsbi.pyhf_import`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nsbi.io import json_text, write_json

__all__ = ["main", "load_any"]


def load_any(
    path: str,
    measurement: str | None = None,
    patches: list[str] | tuple[str, ...] = (),
    patchset: str | None = None,
    point: str | None = None,
):
    """Load an nsbi workspace, or convert a pyhf workspace JSON.

    For a pyhf workspace, the patch of ``point`` (name or values) of the pyhf ``patchset``
    (digests verified against the workspace) and then the JSON Patch files ``patches`` are
    applied before the conversion (:func:`nsbi.pyhf_import.read_pyhf_workspace`).
    """
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
        from nsbi.pyhf_import import read_pyhf_workspace

        spec, applied = read_pyhf_workspace(path, patches=patches or (), patchset=patchset, point=point, spec=spec)
        meta = {"patches_applied": applied} if applied else None
        return W.from_pyhf(spec, measurement=measurement, source=f"pyhf workspace {path}", metadata=meta), "pyhf"
    if patches or patchset or point:
        raise W.WorkspaceError(f"{path}: --patch, --patchset and --point apply to pyhf workspaces only")
    return W.load(p), "nsbi"


def _patch_options(args) -> dict:
    """The pyhf patch options of ``args`` as keyword arguments of :func:`load_any`."""
    return {
        "patches": getattr(args, "patch", None) or (),
        "patchset": getattr(args, "patchset", None),
        "point": getattr(args, "point", None),
    }


def _result(args, ws, model, result: dict) -> dict:
    """A command's JSON output: the workspace, dataset and measurement it used, then ``result``."""
    return {
        "workspace": str(args.workspace),
        "dataset": ws.dataset(args.dataset)["name"],
        "measurement": model.measurement_name,
        **result,
    }


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
    """Summary of a workspace, as ``pyhf inspect`` gives one: channels (bins), samples and their
    modifiers (name, type), parameters (init, bounds, fixed, constraint, modifier types),
    measurements (POI, configured parameters), observations; for a pyhf workspace also the
    patches applied and the observations ignored (of channels not in the model)."""
    ws, kind = load_any(args.workspace, None, **_patch_options(args))  # every measurement listed
    model = ws.model(dataset=args.dataset, measurement=args.measurement)
    meta = ws.spec.get("metadata", {})
    samples, mod_types, used_by = [], {}, {}
    for c in ws.spec["channels"]:
        for s in c["samples"]:
            mods = [{"name": m["name"], "type": m["type"]} for m in s.get("modifiers", [])]
            samples.append(
                {
                    "channel": c["name"],
                    "name": s["name"],
                    "modifiers": mods,
                    **({"morphing": s["morphing"]} if s.get("morphing") is not None else {}),
                }
            )
            for m in mods:
                mod_types.setdefault(m["name"], [])
                if m["type"] not in mod_types[m["name"]]:
                    mod_types[m["name"]].append(m["type"])
                used_by.setdefault((m["name"], m["type"]), []).append(f"{c['name']}/{s['name']}")
    for ps in model.parsets:
        if ps.kind == "morphing" and ps.name not in mod_types:
            mod_types[ps.name] = ["morphing"]
    parameters = []
    for ps in model.parsets:
        sl = model.par_slices[ps.name]
        for i, lab in zip(range(sl.start, sl.stop), ps.labels):
            parameters.append(
                {
                    "name": lab,
                    "parameter": ps.name,
                    "init": float(model.init[i]),
                    "bounds": list(model.bounds[i]),
                    "fixed": bool(model.fixed[i]),
                    "constrained": bool(model.constrained[i]),
                    "constraint": ps.constraint or "none",
                    "modifiers": mod_types.get(ps.name, [ps.kind]),
                }
            )
    info = {
        "source": kind,
        "workspace": str(args.workspace),
        "channels": [
            {
                "name": c["name"],
                "type": c["type"],
                "samples": [s["name"] for s in c["samples"]],
                **({"bins": len(c["samples"][0]["data"])} if c["type"] == "binned" else {}),
            }
            for c in ws.spec["channels"]
        ],
        "samples": samples,
        "modifiers": [{"name": n, "type": t, "samples": u} for (n, t), u in used_by.items()],
        "datasets": ws.datasets,
        "observations": [
            {
                "dataset": d["name"],
                "channels": [
                    {"name": c["name"], "bins": len(c["data"])}
                    if "data" in c
                    else {"name": c["name"], "events": c["events"].get("n_events")}
                    for c in d["channels"]
                ],
            }
            for d in ws.spec["observations"]
        ],
        "measurements": ws.measurements,
        "measurement": model.measurement_name,
        "measurement_configs": [
            {
                "name": m["name"],
                "poi": m["config"]["poi"],
                "parameters": [p["name"] for p in m["config"].get("parameters", [])],
            }
            for m in ws.spec["measurements"]
        ],
        "poi": model.poi_name,
        "parameters": parameters,
        **({"ignored_observations": meta["ignored_observations"]} if "ignored_observations" in meta else {}),
        **({"patches_applied": meta["patches_applied"]} if "patches_applied" in meta else {}),
    }
    if args.output == "json" or args.output_file:
        _write(info, args)
    if args.output != "json":
        print(f"workspace: {args.workspace} ({kind})")
        for a in info.get("patches_applied", []):
            print(
                f"  patched with {a['patchset']} point {a['point']}"
                if "patchset" in a
                else f"  patched with {a['patch']}"
            )
        for c in info["channels"]:
            extra = f", {c['bins']} bins" if "bins" in c else ""
            print(f"  channel {c['name']} [{c['type']}{extra}]: samples {', '.join(c['samples'])}")
        print(
            f"  datasets: {', '.join(ws.datasets)}; measurements: {', '.join(ws.measurements)}; POI: {model.poi_name}"
        )
        print(
            f"  {model.npars} parameters ({int(model.constrained.sum())} constrained, {int(model.fixed.sum())} fixed)"
        )
        w = max([len(p["name"]) for p in parameters] + [len(s["name"]) for s in samples] + [10])
        print(f"\n  {'sample':<{w}}  modifiers (name: type)")
        for s in samples:
            mods = ", ".join(f"{m['name']}: {m['type']}" for m in s["modifiers"])
            morph = f"; morphing {s['morphing']}" if "morphing" in s else ""
            print(f"  {s['name']:<{w}}  [{s['channel']}] {mods or '-'}{morph}")
        print(f"\n  {'parameter':<{w}}  {'init':>10}  {'bounds':>23}  {'constraint':<10}  modifiers")
        for p in parameters:
            b = f"[{p['bounds'][0]:.4g}, {p['bounds'][1]:.4g}]"
            fixed = "  (fixed)" if p["fixed"] else ""
            print(
                f"  {p['name']:<{w}}  {p['init']:>10.4g}  {b:>23}  {p['constraint']:<10}  "
                f"{', '.join(p['modifiers'])}{fixed}"
            )
        wm = max([len(m["name"]) + 4 for m in info["measurement_configs"]] + [len("measurement")])
        wp = max([len(m["poi"] or "-") for m in info["measurement_configs"]] + [3])
        print(f"\n  {'measurement':<{wm}}  {'poi':<{wp}}  parameters")
        for m in info["measurement_configs"]:
            star = "(*) " if m["name"] == model.measurement_name else ""
            print(f"  {star + m['name']:<{wm}}  {m['poi'] or '-':<{wp}}  {', '.join(m['parameters']) or '(none)'}")
        print("\n  observations:")
        for d in info["observations"]:
            chans = ", ".join(
                f"{c['name']} ({c['bins']} bins)" if "bins" in c else f"{c['name']} ({c['events']} events)"
                for c in d["channels"]
            )
            print(f"  {d['dataset']}: {chans}")
        if info.get("ignored_observations"):
            print(f"  ignored (channel not in the model): {', '.join(info['ignored_observations'])}")
    return 0


def cmd_fit(args) -> int:
    from nsbi import fit as F

    ws, _ = load_any(args.workspace, args.measurement, **_patch_options(args))
    model = ws.model(dataset=args.dataset, measurement=args.measurement)
    r = F.fit(model, minos=bool(args.minos), strategy=args.strategy, tolerance=args.tolerance, errors=args.errors)
    out = _result(args, ws, model, r.to_dict())
    if args.output == "json" or args.output_file:
        _write(out, args)
    if args.output != "json":
        print(_fmt_table(r.names, r.values, r.errors))
        print(f"-2lnL at minimum: {r.twice_nll:.10g}   valid: {r.status['valid']}")
    return 0 if r.status["valid"] else 2


def cmd_scan(args) -> int:
    import numpy as np

    from nsbi import fit as F

    pois = args.poi or [None]
    ranges = args.range or []
    if len(pois) > 2 or len(ranges) > len(pois):
        raise SystemExit(f"nsbi scan: give one or two --poi names and at most one --range per POI, got {pois} {ranges}")
    ws, _ = load_any(args.workspace, args.measurement, **_patch_options(args))
    model = ws.model(dataset=args.dataset, measurement=args.measurement)
    if len(pois) == 2:
        return _scan2d(args, model, pois, ranges)
    values = np.linspace(ranges[0][0], ranges[0][1], args.points) if ranges else None
    s = F.scan(model, values=values, poi=pois[0], mode=args.mode, npoints=args.points)
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


def _scan2d(args, model, pois, ranges) -> int:
    """2-D profile scan of two POIs (:func:`nsbi.scan2d.scan2d`); a pair without ``--range``
    is scanned over its best fit +- 3.5 errors, within its bounds."""
    import numpy as np

    from nsbi import fit as F
    from nsbi.scan2d import scan2d

    if args.mode != "profile":
        raise SystemExit("nsbi scan: a 2-D scan profiles every other parameter (--mode profile)")
    for name in pois:
        if name not in model.par_names:
            raise SystemExit(f"nsbi scan: {name!r} is not a parameter of the model")
    best = F.fit(model, errors="exact")
    grids = []
    for k, name in enumerate(pois):
        if k < len(ranges):
            lo, hi = ranges[k]
        else:
            i = model.index(name)
            c, e = best.values[i], best.errors[i] if best.errors[i] > 0 else 1.0
            lo, hi = max(model.bounds[i][0], c - 3.5 * e), min(model.bounds[i][1], c + 3.5 * e)
        grids.append(np.linspace(lo, hi, args.points))
    s = scan2d(model, grids[0], grids[1], pois, best_fit=best)
    out = {"workspace": str(args.workspace), **s.to_dict()}
    if args.output == "json" or args.output_file:
        _write(out, args)
    if args.output != "json":
        print(f"{pois[0]}, {pois[1]} best fit {s.best[0]:.6g}, {s.best[1]:.6g}  correlation {s.correlation:.4f}")
        for k, area in s.areas().items():
            print(f"  {k}% CL region: {len(s.contours[k])} contour(s), area {area:.6g}")
    if args.plot:
        from nsbi.plotting.fit_plots import plot_scan2d

        plot_scan2d(s, args.plot)
    return 0 if s.converged.all() else 2


def _limit_calculator(args, test_stat: str, **kw):
    """(workspace, model, :class:`nsbi.limits.HypoTestCalculator`) of the CLI arguments; unbinned
    channels get Asimov datasets and toys from the workspace's ``asimov`` events."""
    from nsbi import limits as Lim

    ws, _ = load_any(args.workspace, args.measurement, **_patch_options(args))
    model = ws.model(dataset=args.dataset, measurement=args.measurement)
    toys = {"calctype": "toybased", "n_toys": args.toys, "seed": args.seed} if args.toys else {}
    gen = Lim.generator_for(ws, model)
    calc = Lim.HypoTestCalculator(model, test_stat=test_stat, generator=gen, tolerance=args.tolerance, **toys, **kw)
    return ws, model, calc


def cmd_limit(args) -> int:
    """Observed and expected CLs upper limits on the POI (asymptotic, or toys with --toys)."""
    import numpy as np

    from nsbi import limits as Lim

    ws, model, calc = _limit_calculator(args, args.test_stat)
    ul = Lim.upper_limit(model, cl=args.cl, calculator=calc)
    out = _result(args, ws, model, ul.to_dict())
    if args.plot:
        from nsbi.plotting.limits import plot_cls

        if args.range:
            lo, hi = args.range
        else:
            finite = [v for v in [ul.observed, *ul.expected] if np.isfinite(v)]
            lo, hi = float(calc.bounds[calc.ip][0]), 1.2 * max(finite or [float(calc.bounds[calc.ip][1])])
        scan = Lim.cls_scan(model, np.linspace(lo, hi, args.points), cl=args.cl, calculator=calc)
        plot_cls(scan, args.plot, limit=ul)
        out["plot_scan"] = scan.to_dict()
    if args.output == "json" or args.output_file:
        _write(out, args)
    if args.output != "json":
        how = f"{args.toys} toys" if args.toys else "asymptotic"
        e = ul.expected
        print(f"{ul.poi}: {100 * args.cl:g}% CL upper limit (CLs, {ul.test_stat}, {how})")
        print(f"  observed: {ul.observed:.6g}")
        print(
            f"  expected: {e[2]:.6g}  [-1 sigma {e[1]:.6g}, +1 sigma {e[3]:.6g}]"
            f"  [-2 sigma {e[0]:.6g}, +2 sigma {e[4]:.6g}]"
        )
        for note in ul.notes:
            print(f"  note: {note}")
    return 0 if all(p.converged for p in ul.points) else 2


def cmd_significance(args) -> int:
    """Discovery test: q0, p0 and Z, observed and expected (Asimov dataset at POI = --poi-value)."""
    from nsbi import limits as Lim

    ws, model, calc = _limit_calculator(args, "q0", asimov_poi=args.poi_value)
    s = Lim.significance(model, calculator=calc)
    out = _result(args, ws, model, s.to_dict())
    if args.output == "json" or args.output_file:
        _write(out, args)
    if args.output != "json":
        how = f"{args.toys} toys" if args.toys else "asymptotic"
        print(f"{s.poi}: discovery test (q0, {how}); best fit {s.poi} = {s.poi_hat:.6g}")
        print(f"  observed: q0 = {s.q0:.6g}  p0 = {s.p0:.6g}  Z = {s.z:.4g}")
        q0a = "" if s.q0_asimov is None else f"q0 = {s.q0_asimov:.6g}  "
        print(
            f"  expected ({s.poi} = {s.asimov_poi:g}): {q0a}p0 = {s.p0_expected[2]:.6g}  Z = {s.z_expected[2]:.4g}"
            f"  [Z -1 sigma {s.z_expected[3]:.4g}, +1 sigma {s.z_expected[1]:.4g}]"
        )
    return 0 if s.converged else 2


def cmd_check_pyhf(args) -> int:
    from nsbi.pyhf_check import PyhfMismatch, compare

    ws, _ = load_any(args.workspace, args.measurement, **_patch_options(args))
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
        sp.add_argument(
            "--patch",
            action="append",
            default=[],
            metavar="FILE",
            help="pyhf workspace: apply this JSON Patch (RFC 6902) first; repeatable, applied in order",
        )
        sp.add_argument(
            "--patchset",
            default=None,
            metavar="FILE",
            help="pyhf workspace: apply the patch of --point of this pyhf patchset (digest verified)",
        )
        sp.add_argument("--point", default=None, help="patchset point: patch name or values ('1000,100')")

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
    sp = sub.add_parser("scan", help="profile-likelihood scan of the POI (of two parameters: 2-D with contours)")
    common(sp)
    sp.add_argument(
        "--poi", nargs="+", default=None, metavar="NAME", help="parameter(s) to scan (default the POI); two: 2-D scan"
    )
    sp.add_argument("--points", type=int, default=21, help="scan points (per axis)")
    sp.add_argument(
        "--range",
        type=float,
        nargs=2,
        action="append",
        default=None,
        metavar=("LO", "HI"),
        help="scan range; repeat for the second parameter of a 2-D scan",
    )
    sp.add_argument("--mode", choices=["profile", "stat_only", "stat_only_nominal"], default="profile")
    sp.add_argument("--plot", default=None, help="write a scan plot (pdf/png)")
    sp.set_defaults(func=cmd_scan)

    def hypo(sp):
        sp.add_argument("--toys", type=int, default=0, metavar="N", help="N toys per hypothesis (default: asymptotic)")
        sp.add_argument("--seed", type=int, default=0, help="toy seed")
        sp.add_argument("--tolerance", type=float, default=1e-6, help="fits to EDM < 0.002 x tolerance")

    sp = sub.add_parser("limit", help="CLs upper limits on the POI (observed and expected)")
    common(sp)
    hypo(sp)
    sp.add_argument("--cl", type=float, default=0.95, help="confidence level (default 0.95)")
    sp.add_argument("--test-stat", choices=["qtilde", "q"], default="qtilde")
    sp.add_argument("--plot", default=None, help="write a CLs vs POI plot with the expected band (pdf/png)")
    sp.add_argument("--points", type=int, default=31, help="POI points of the plot")
    sp.add_argument("--range", type=float, nargs=2, default=None, metavar=("LO", "HI"), help="POI range of the plot")
    sp.set_defaults(func=cmd_limit)
    sp = sub.add_parser("significance", help="discovery test: q0, p0, Z (observed and expected)")
    common(sp)
    hypo(sp)
    sp.add_argument("--poi-value", type=float, default=1.0, help="POI of the Asimov dataset for the expected Z")
    sp.set_defaults(func=cmd_significance)
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
