# Built-in simulator: gg -> (H* ->) ZZ -> 4l with interference, electroweak (VBF-like) ZZ with
# its own signal strength, and qq -> ZZ.
# One job per simulated process (nominal + lepton-energy-scale variations), one for data.
SIM = config["simulation"]


rule simulate_sample:
    input:
        code=code_inputs("scripts/simulate_sample.py"),
    output:
        nominal=f"{SIMDIR}/{{simprocess}}.root",
        les_up=f"{SIMDIR}/{{simprocess}}_LES_up.root",
        les_down=f"{SIMDIR}/{{simprocess}}_LES_down.root",
    log:
        f"{RESULTS}/logs/simulate/{{simprocess}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/simulate/{{simprocess}}.tsv"
    conda:
        CONDA_ENV
    params:
        settings=lambda w: canonical(
            {
                "process": w.simprocess,
                "n_events": SIM["events_per_sample"],
                "seed": SIM["seed"],
                "lumi_ifb": SIM["lumi_ifb"],
                "tree": config["input"]["tree"],
            }
        ),
    script:
        "../scripts/simulate_sample.py"


rule simulate_data:
    input:
        code=code_inputs("scripts/simulate_data.py"),
    output:
        f"{SIMDIR}/data.root",
    log:
        f"{RESULTS}/logs/simulate/data.log",
    benchmark:
        f"{RESULTS}/benchmarks/simulate/data.tsv"
    conda:
        CONDA_ENV
    params:
        settings=canonical(
            {
                "mu": SIM["data"]["mu"],
                "nuisances": SIM["data"]["nuisances"],
                "seed": SIM["data"]["seed"],
                "lumi_ifb": SIM["lumi_ifb"],
                "tree": config["input"]["tree"],
            }
            # the electroweak signal strength only where the config simulates that production,
            # so that one-POI runs keep their parameters (and are not rerun)
            | ({"mu_V": SIM["data"]["mu_V"]} if "mu_V" in SIM["data"] else {})
        ),
    script:
        "../scripts/simulate_data.py"
