"""``python -m analysis.trials --csv PATH``: every trial of a study as one CSV table
(``--config N``: trial N's config as the JSON ``python -m study.train --config`` takes).

One row per trial, whatever its state: number, state, value (held-out perplexity), start time
and duration (s), every stored attribute (size in parameters, tokens seen, tokens/s, epochs,
held-out loss in nats/token, perplexity, bits per byte, device, ...), the full config
flattened to config.model.n_layer and the like, Optuna's sampled params as param.<name>, and
the fail reason of a trial that did not complete. In pandas the same table is one line:
analysis.load.trials_table("sqlite:///study.db", "my-study").
"""

from __future__ import annotations

import argparse

from analysis.args import add_study_args, analysis_main, make_parser, setup_logging
from analysis.views.trials import run_trials, trial_config
from study.outputs import add_force_arg


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "python -m analysis.trials",
        __doc__,
        examples=[
            "python -m analysis.trials --csv trials.csv",
            "python -m analysis.trials --storage sqlite:///study.db --study-name default --csv -",
            "python -m analysis.trials --storage sqlite:///study.db --study-name "
            "default-cpu-60s --config 1",
        ],
    )
    add_study_args(parser)
    add_force_arg(parser)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--csv",
        metavar="PATH",
        help="the .csv file to write, or - for standard output",
    )
    what.add_argument(
        "--config",
        type=int,
        metavar="N",
        help="print trial N's full config as JSON for python -m study.train --config "
        "(with --steps S for an exact re-run); needs --study-name",
    )
    return parser


@analysis_main
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging()
    if args.config is not None:
        print(trial_config(storage=args.storage, study_name=args.study_name, number=args.config))
        return
    print(
        run_trials(storage=args.storage, study_name=args.study_name, csv=args.csv, force=args.force)
    )


if __name__ == "__main__":
    main()
