"""Command line: ``miniff {info,version,quickstart,FILE.yml}`` (also ``python -m miniff ...``).

Argument parsing only; the work is done by :mod:`miniff.ml_util` (job file format: :mod:`miniff.fit.jobs`).
Every stage prints a short summary at its end (``-q``: none); ``-v`` adds progress bars and info logging.
Exit codes: 0 success, 1 invalid job or missing/invalid data (a one-line message on stderr), 2 workflows not
available, 130 interrupted (re-running the job resumes from its last checkpoint).
"""

import argparse
import logging
import os
import sys

__all__ = ["main"]


def _prog():
    """``miniff`` when run as the console script, ``python -m miniff`` otherwise (the usage lines say so)."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "miniff" if os.path.splitext(name)[0] == "miniff" else "python -m miniff"


def _source_tree_advice():
    """Advice when miniff was imported from an unbuilt source folder (None when the compiled core loads)."""
    try:
        import miniff._ext  # noqa: F401
    except ImportError:
        pass
    else:
        return None
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the folder holding the package
    if not os.path.isfile(os.path.join(root, "setup.py")):
        return None
    return (f"miniff was imported from the source folder {root}, whose compiled core is not built.\n"
            "If you installed miniff, run it from another folder (this folder hides the installed copy).\n"
            "To work on miniff in place instead, build the core here: bash tools/build.sh")


def _parser():
    p = argparse.ArgumentParser(
        prog=_prog(),
        description="Run miniff workflows from a YAML job file, or print information.",
        epilog="Commands: 'info' prints versions, OpenMP and threads; 'version' prints the version; "
               "'quickstart [--quick] [--out DIR]' runs the README's main job (fit, check, relax, plot).",
    )
    p.add_argument("target", help="a YAML job file, or one of the commands 'info', 'version' and 'quickstart'")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="more output: progress bars and info logging (-v), debug logging (-vv)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no summaries at the end of the stages (warnings and errors only)")
    return p


def main(argv=None):
    """Entry point; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["quickstart"]:
        from miniff.quickstart import main as quickstart

        return quickstart(argv[1:], prog=f"{_prog()} quickstart")
    args = _parser().parse_args(argv)
    if args.target == "version":
        from miniff.version import __version__

        print(__version__)
        return 0
    if args.target == "info":
        from miniff._show_versions import show_versions

        show_versions()
        advice = _source_tree_advice()
        if advice is not None:
            print(advice)
        return 0
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    if args.quiet:
        level = logging.ERROR
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        from miniff.ml_util import run_job_file
    except ImportError as error:
        print(f"miniff: workflows are not available: {error}", file=sys.stderr)
        return 2
    try:
        # every stage prints its summary (fit: epochs, time, stop reason, errors; test: errors) unless -q;
        # progress bars only with -v
        run_job_file(args.target, run_defaults={"summary": not args.quiet,
                                                "progress": bool(args.verbose) and not args.quiet})
    except (FileNotFoundError, ValueError, KeyError, TypeError, ConnectionError, ImportError) as error:
        # ConnectionError: a database server (postgresql://) unreachable; ImportError: its client not installed
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"miniff: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("miniff: interrupted; run the same job again to resume from its last checkpoint", file=sys.stderr)
        return 130
    return 0
