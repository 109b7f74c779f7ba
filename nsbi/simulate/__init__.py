"""Built-in simulator: gg -> (H* ->) ZZ -> 4l with signal/background interference, electroweak
(VBF-like) qq -> qq (H* ->) ZZ -> 4l with its own signal strength and interference, and qq -> ZZ.

Fast (vectorised numpy), deterministic from a seed, with an exact likelihood (the :class:`Oracle`).
Physics model and all constants: :mod:`nsbi.simulate.physics`; lepton kinematics:
:mod:`nsbi.simulate.kinematics`; MC, pseudo-data and ROOT output: :mod:`nsbi.simulate.generate`.

Processes: "S" (signal), "B" (gg background), "SBI" (coherent sum at mu = 1), "I" (interference,
signed weights), "qqZZ"; the electroweak "VS", "VB", "VSBI", "VI" (second signal strength mu_V).
Systematics: LES (varied files), kfactor and qcdscale (weight branches),
lumi (normalisation only, 1.7 %).

Public API::

    generate(process, n_events, seed, lumi_ifb=140.0, variation="nominal") -> dict
    generate_variations(process, n_events, seed, lumi_ifb=140.0) -> {"nominal"|"LES_up"|"LES_down": dict}
    generate_data(mu=1.0, nuisances=None, seed=..., lumi_ifb=140.0, mu_v=None) -> dict
    write_sample(process, outdir, n_events, seed, lumi_ifb=140.0, tree="events") -> [Path, Path, Path]
    sample_files(process) -> {variation: file name}; DATA_FILE
    write_data(path, mu=1.0, nuisances=None, seed=..., lumi_ifb=140.0, tree="events", mu_v=None) -> Path
    xsec(process, mu=1.0, kfactor=0.0, qcdscale=0.0) -> float   # fb
    expected_yields(mu=1.0, nuisances=None, lumi_ifb=140.0, mu_v=None) -> {"gg", ["vv",] "qqZZ", "total"}
    Oracle(lumi_ifb=140.0)
"""

from .generate import (
    DATA_FILE,
    VARIATIONS,
    expected_yields,
    generate,
    generate_data,
    generate_variations,
    sample_files,
    write_data,
    write_root,
    write_sample,
)
from .oracle import Oracle
from .physics import EW_PROCESSES, FEATURES, GG_PROCESSES, PROCESSES, SYSTEMATICS, xsec

__all__ = [
    "DATA_FILE",
    "EW_PROCESSES",
    "FEATURES",
    "GG_PROCESSES",
    "PROCESSES",
    "SYSTEMATICS",
    "VARIATIONS",
    "Oracle",
    "expected_yields",
    "generate",
    "generate_data",
    "generate_variations",
    "write_data",
    "write_root",
    "sample_files",
    "write_sample",
    "xsec",
]
