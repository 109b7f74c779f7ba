"""Snakemake script: data vs MC of the network outputs and the sensitivity maps of one region."""

from nsbi.io import read_parquet, write_json
from nsbi.plotting.network import run_network_plots
from nsbi.workflow import job_logging

smk = snakemake
with job_logging(smk, "nsbi.plot") as log:
    p = smk.params
    summary = run_network_plots(
        read_parquet(smk.input.events),
        read_parquet(smk.input.table),
        read_parquet(smk.input.data[0]) if smk.input.data else None,
        p.processes,
        p.coefficients,
        p.poi,
        p.poi_ref,
        p.poi_values,
        p.reference,
        p.x,
        p.y,
        p.bins,
        smk.output.logr,
        smk.output.sensitivity,
        labels=p.labels,
        sample_labels=p.sample_labels,
        region_label=p.region_label,
        poi_label=p.poi_label,
        data_label=p.data_label,
        other_pois=p.other_pois,
    )
    write_json(summary, smk.output.summary)
    log.info("wrote %d network-output plots and %d sensitivity maps", len(smk.output.logr), len(smk.output.sensitivity))
