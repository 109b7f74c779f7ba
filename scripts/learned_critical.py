"""Snakemake script: critical values learned from the toys spread over the POI range, their
audit on independent toys (the job fails when it does not pass), and the observed and Asimov
intervals next to Wilks'."""

import json

from nsbi.io import write_json
from nsbi.learned_critical import learned_construction
from nsbi.neyman import observed_t
from nsbi.plotting.intervals import plot_learned
from nsbi.validation import focus_density, toy_generator
from nsbi.workflow import job_logging

with job_logging(snakemake, "nsbi.neyman") as log:
    sm, p = snakemake, snakemake.params
    model, gen = toy_generator(sm.input.ws, p.dataset)
    kw = {"kind": p.kind, "focus": focus_density(model, p.focus)}
    curves = {
        "observed": observed_t(model, p.fine, **kw),
        "asimov": observed_t(gen.model_for(gen.asimov(model.init)), p.fine, **kw),
    }
    toys = [json.loads(open(f).read()) for f in sm.input.toys]
    net = dict(p.network)
    seed = net.pop("seed")
    out = learned_construction(toys, list(sm.input.audit), p.cls, p.low, p.high, p.fine, curves, seed, net, p.tolerance)
    out["poi"] = model.poi_name
    log.info("audit: %s", json.dumps(out["audit"]))
    if not out["audit"]["passed"]:
        raise RuntimeError(
            f"the learned critical values fail their audit: max |pull| {out['audit']['max_abs_pull']:.2f} > "
            f"validation.learned.audit.tolerance {p.tolerance} (details in this log)"
        )
    write_json(out, sm.output.json)
    plot_learned(out, toys, sm.output.plot, poi_label=p.poi_label)
