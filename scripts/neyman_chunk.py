"""Snakemake script: toys and t_mu at one POI grid point, one batch (Neyman construction or coverage)."""

from nsbi.neyman import compute_chunk, theta_at, write_chunk
from nsbi.validation import focus_density, toy_generator
from nsbi.workflow import interactive, job_logging

with job_logging(snakemake, "nsbi.neyman") as log:
    sm, p = snakemake, snakemake.params
    model, gen = toy_generator(sm.input.ws, p.dataset)
    theta = theta_at(gen, p.poi_value, p.nuisances)
    chunk = compute_chunk(
        gen,
        p.poi_value,
        p.n,
        p.seed,
        mu_index=int(sm.wildcards.ipoint),
        batch=int(sm.wildcards.batch),
        kind=p.kind,
        theta=theta,
        batch_size=p.batch_size,
        progress=interactive(),
        focus=focus_density(model, p.focus),
    )
    write_chunk(chunk, sm.output[0])
    log.info(
        "%s=%g: %d toys, %s",
        model.poi_name,
        p.poi_value,
        p.n,
        {k: v for k, v in chunk.items() if k in ("n_fallback", "n_failed", "nonpositive_events", "seconds")},
    )
