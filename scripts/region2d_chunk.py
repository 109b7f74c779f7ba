"""Snakemake script: toys and t at one node of the 2-D grid of validation.region2d (one batch),
or at a true node of its coverage check."""

from nsbi.neyman import compute_chunk, theta_at, write_chunk
from nsbi.validation import toy_generator
from nsbi.workflow import interactive, job_logging

with job_logging(snakemake, "nsbi.neyman") as log:
    sm, p = snakemake, snakemake.params
    model, gen = toy_generator(sm.input.ws, p.dataset)
    point = dict(p.point)
    chunk = compute_chunk(
        gen,
        point,
        p.n,
        p.seed,
        mu_index=int(p.index),
        batch=int(p.batch),
        theta=theta_at(gen, point, p.nuisances),
        batch_size=p.batch_size,
        progress=interactive(),
    )
    write_chunk(chunk, sm.output[0])
    log.info("%s: %d toys, %s", point, p.n, {k: chunk[k] for k in ("n_fallback", "n_failed", "seconds")})
