"""Snakemake script: confidence belt and Neyman intervals (observed and Asimov) vs Wilks."""

from nsbi.io import write_json
from nsbi.neyman import gather, observed_t
from nsbi.plotting.intervals import plot_belt
from nsbi.validation import focus_density, toy_generator
from nsbi.workflow import job_logging

with job_logging(snakemake, "nsbi.neyman") as log:
    sm, p = snakemake, snakemake.params
    model, gen = toy_generator(sm.input.ws, p.dataset)
    focus = focus_density(model, p.focus)
    obs = observed_t(model, p.fine, kind=p.kind, focus=focus)
    asimov = observed_t(gen.model_for(gen.asimov(model.init)), p.fine, kind=p.kind, focus=focus)
    belt = gather(list(sm.input.chunks), obs, asimov, p.cls)
    write_json(belt, sm.output.belt)
    plot_belt(belt, sm.output.plot, poi_label=p.poi_label)
    log.info("intervals: %s", belt.get("intervals"))
