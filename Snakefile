# nsbi: neural simulation-based inference, from ROOT ntuples to confidence intervals.
# Run `snakemake -n` to see the jobs, `snakemake --cores N` to run them; see README.md.
import sys
import warnings

from snakemake.utils import min_version

from nsbi.check import check_before_run
from nsbi.config import validate

min_version("9.0")


report: "report/workflow.rst"


# The demo analysis is the default. A config given with --configfile replaces it entirely
# (no key-by-key merge with the demo, so nothing of the demo leaks into your analysis).
if not workflow.overwrite_configfiles:

    configfile: f"{workflow.basedir}/config/config.yaml"


# JSON-schema validation (nsbi/schemas/config.schema.yaml, package data) with defaults filled in,
# plus cross-reference checks; errors name the offending config key. Renamed keys are still read
# with a DeprecationWarning, shown here (Python hides DeprecationWarnings outside __main__).
with warnings.catch_warnings():
    warnings.filterwarnings("default", r"config key .* is deprecated", DeprecationWarning)
    config.update(validate(config))


# Every input file, tree and branch of every sample and variation is checked once when a run
# starts, before any job (nsbi.check; `nsbi check CONFIG` runs the same checks alone): all
# problems are reported at once, each naming the config key and the file.
onstart:
    print(check_before_run(config), file=sys.stderr)


include: "rules/common.smk"
include: "rules/simulate.smk"
include: "rules/prep.smk"
include: "rules/plots.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/workspace.smk"
include: "rules/fit.smk"
include: "rules/validate.smk"


rule all:
    default_target: True
    input:
        all_targets(),


# each rule's code= input lists the modules its script imports (rules/common.smk)
check_code_inputs()
