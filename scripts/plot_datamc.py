"""Snakemake script: data vs MC plot of every feature in one region."""

import matplotlib.pyplot as plt

from nsbi.expr import parse
from nsbi.io import read_parquet
from nsbi.plotting.datamc import auto_edges, datamc_figure
from nsbi.workflow import job_logging

with job_logging(snakemake, "nsbi.plot") as log:
    p = snakemake.params
    mc = {name: read_parquet(path) for name, path in zip(p.mc_samples, snakemake.input.mc)}
    data = read_parquet(snakemake.input.data) if p.data_sample else None
    values = {**p.other_pois, p.poi: p.poi_value}
    coefficients = {name: float(parse(text).evaluate(values)) for name, text in p.coefficients.items()}
    for feature, out in zip(p.features, snakemake.output):
        edges = auto_edges([c[feature] for c in mc.values()], [c["weight"] for c in mc.values()])
        fig = datamc_figure(
            {n: (c[feature], c["weight"]) for n, c in mc.items()},
            coefficients,
            data[feature] if data is not None else None,
            edges,
            xlabel=p.labels.get(feature, feature),
            labels=p.sample_labels,
            title=f"{p.region_label}, {p.poi_label} = {p.poi_value:g}",
            data_label=p.data_label,
        )
        fig.savefig(out, bbox_inches="tight")
        plt.close(fig)
        log.info("wrote %s", out)
