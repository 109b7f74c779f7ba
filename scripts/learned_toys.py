"""Snakemake script: one toy at each of per_batch POI values drawn over the validation range
(one batch of the learned construction), t_mu of each at its own POI."""

from nsbi.io import write_json
from nsbi.learned_critical import sample_points, toys_over_range
from nsbi.validation import focus_density, toy_generator
from nsbi.workflow import job_logging

with job_logging(snakemake, "nsbi.neyman") as log:
    sm, p = snakemake, snakemake.params
    model, gen = toy_generator(sm.input.ws, p.dataset)
    batch = int(sm.wildcards.batch)
    points = sample_points(p.low, p.high, p.n, seed=(p.seed, batch))
    focus = focus_density(model, p.focus)
    out = toys_over_range(
        gen, points, p.seed, batch, nuisances=p.nuisances, batch_size=p.batch_size, kind=p.kind, focus=focus
    )
    write_json(out, sm.output[0])
    log.info("%d toys over [%g, %g]: %d fallbacks, %d failed", p.n, p.low, p.high, out["n_fallback"], out["n_failed"])
