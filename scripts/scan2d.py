"""Snakemake script: 2-D profile scan of a pair of POIs of one workspace dataset, its 68 % and
95 % contours (JSON) and their plot."""

from nsbi import workspace as W
from nsbi.analysis import scan_pair
from nsbi.io import write_json
from nsbi.plotting.fit_plots import plot_scan2d
from nsbi.workflow import job_logging

with job_logging(snakemake, "nsbi.fit") as log:
    sm, p = snakemake, snakemake.params
    res = scan_pair(W.load(sm.input.ws), sm.wildcards.dataset, p.pois, p.x, p.y)
    write_json(res.to_dict(), sm.output.json)
    plot_scan2d(res, sm.output.plot, labels=[sm.wildcards.kind], axis_labels=[p.labels[n] for n in p.pois])
    log.info(
        "best %s, correlation %.3f, areas %s, %d of %d grid fits converged",
        dict(zip(p.pois, res.best)),
        res.correlation,
        res.areas(),
        int(res.converged.sum()),
        res.converged.size,
    )
