"""python -m lintorch.homework {init,check,train,sweep}: the homework kit's command line."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from . import ITEMS, STUDENT_FILE, version_line


def build_parser() -> argparse.ArgumentParser:
    from lintorch import cli

    parser = argparse.ArgumentParser(
        prog="python -m lintorch.homework",
        description="A homework kit: students write the lecture's losses and gradients in "
                    f"{STUDENT_FILE}, and lintorch grades them.",
        epilog="check exits with 0 if every function passes and 1 otherwise; a bad flag is "
               "exit 2.")
    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="write a student folder: the stubs and a README",
                       description="Write a student folder: linear_classifier.py (the stubs, "
                                   "each task in its docstring) and README.md (how to check "
                                   "and train). Refuses a folder that is not empty.")
    p.add_argument("dir", type=Path, metavar="DIR", help="the folder, new or empty")
    p.add_argument("--solution", action="store_true",
                   help="write the reference solution instead (lintorch's own code): the "
                        "teacher's copy, which scores full marks")

    p = sub.add_parser("check", help="grade a student folder", formatter_class=cli.HelpFormatter,
                       description="Grade the functions of DIR/linear_classifier.py, each in a "
                                   "child process with a time limit, and print the score. Exit "
                                   "code: 0 if every function passes, 1 otherwise.")
    p.add_argument("dir", type=Path, metavar="DIR",
                   help=f"the student folder (or the path of its {STUDENT_FILE})")
    p.add_argument("--only", nargs="+", choices=ITEMS, metavar="FUNCTION",
                   help=f"check these functions only, of: {', '.join(ITEMS)}")
    p.add_argument("--timeout", type=cli.positive(float), default=20.0,
                   help="seconds each function may take before it fails")

    for name, what in (("train", "train a linear classifier"),
                       ("sweep", "train a grid of linear classifiers (lr x reg)")):
        p = sub.add_parser(name, formatter_class=cli.HelpFormatter,
                           help=f"{what} with the student's vectorized loss and dW",
                           description=f"{what.capitalize()} with lintorch's loop, the loss "
                                       "and its gradient being the student's "
                                       "svm_loss_vectorized or softmax_loss_vectorized (--loss).")
        p.add_argument("dir", type=Path, metavar="DIR", help="the student folder")
        if name == "sweep":
            p.add_argument("--lr", type=cli.positive(float), nargs="+", required=True,
                           metavar="LR", help="learning rates alpha of the grid (each > 0)")
            p.add_argument("--reg", type=cli.non_negative(float), nargs="+", required=True,
                           metavar="REG", help="regularization strengths lambda (each >= 0)")
        cli.add_training_flags(p, skip=("resume", "model", "hidden")
                               + (("lr", "reg") if name == "sweep" else ()))
    return parser


def student_file(path: Path) -> Path:
    file = path / STUDENT_FILE if path.is_dir() else path
    if not file.is_file():
        raise ValueError(f"{file} not found: create the folder with "
                         f"python -m lintorch.homework init {path}")
    return file


def main(argv: list[str] | None = None) -> int:
    from lintorch import cli, train

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("train", "sweep"):
        try:
            # the student's numpy loss runs on the host, which a CUDA graph cannot replay
            cfg = dataclasses.replace(train.config_from_args(args), cuda_graphs=False)
            if args.command == "sweep":
                from lintorch import sweep

                sweep.check_grid(args.lr, args.reg)
            else:
                cfg.resolved()
        except ValueError as e:
            parser.error(str(e))

    def work() -> int | None:
        if args.command == "init":
            from . import kit

            written = kit.init(args.dir, args.solution)
            print(f"{version_line()}: wrote {', '.join(str(p) for p in written)}; check it with "
                  f"python -m lintorch.homework check {args.dir}")
            return 0
        if args.command == "check":
            from . import grade

            return grade.check_main(student_file(args.dir), args.only, args.timeout)
        from . import training

        loss = training.checked_loss(student_file(args.dir), cfg.loss)
        print(f"{version_line()}: training with {args.dir / STUDENT_FILE}'s "
              f"{cfg.loss}_loss_vectorized", flush=True)
        if args.command == "train":
            train.fit(cfg, loss=loss)
        else:
            from lintorch import sweep

            sweep.run(dataclasses.replace(cfg, lr=None, reg=None), args.lr, args.reg, loss=loss)
        return 0

    from .grade import GraderError

    return cli.run_main(work, also=(train.TrainingDiverged, GraderError))


if __name__ == "__main__":
    sys.exit(main())
