"""Snakemake script: Asimov bias and linearity at several injected POI values."""

import json

from nsbi.io import write_json
from nsbi.neyman import linearity
from nsbi.plotting.intervals import plot_linearity
from nsbi.validation import linearity_points, toy_generator
from nsbi.workflow import job_logging

with job_logging(snakemake, "nsbi.neyman") as log:
    sm = snakemake
    model, gen = toy_generator(sm.input.ws, sm.params.dataset)
    lin = linearity(gen, linearity_points(model.poi_name, sm.params.injected, sm.params.nuisances, sm.params.poi_init))
    write_json(lin, sm.output.summary)
    plot_linearity(lin, sm.output.plot, poi_label=sm.params.poi_label)
    log.info("%s", json.dumps(lin)[:2000])
