"""Snakemake script: one toy at each of per_batch POI values drawn over the validation range, or
points drawn in the box of validation.region2d (one batch of the learned construction), the
test statistic of each at its own point."""

from nsbi.io import write_json
from nsbi.learned_critical import sample_box, sample_points, toys_over_range
from nsbi.validation import focus_density, toy_generator
from nsbi.workflow import job_logging

with job_logging(snakemake, "nsbi.neyman") as log:
    sm, p = snakemake, snakemake.params
    model, gen = toy_generator(sm.input.ws, p.dataset)
    batch = int(sm.wildcards.batch)
    # several POIs (validation.region2d): points in the box low x high; else POI values in [low, high]
    sample = sample_box if p.pois else sample_points
    points = sample(p.low, p.high, p.n, seed=(p.seed, batch))
    focus = focus_density(model, p.focus)
    out = toys_over_range(
        gen,
        points,
        p.seed,
        batch,
        nuisances=p.nuisances,
        batch_size=p.batch_size,
        kind=p.kind,
        focus=focus,
        pois=p.pois,
    )
    write_json(out, sm.output[0])
    log.info("%d toys over [%s, %s]: %d fallbacks, %d failed", p.n, p.low, p.high, out["n_fallback"], out["n_failed"])
