"""The ``adlib`` command line.

::

    adlib report [--profile cpu] [--notebooks 00,01] [--params sweep.yaml] [--out reports] [--timeout S]
    adlib data list [--verbose]
    adlib data fetch <name> [--root DIR] [--url URL] [--known-hash HASH] [--allow-unverified]
    adlib data synth <kind> [--category NAME] [--size tiny|default] [--seed 0]
    adlib weights list
    adlib weights fetch <backbone> [--folder DIR] [--url URL]
    adlib score --model BUNDLE --images DIR --out OUT [--backend torch|onnx] [--skip-bad]
    adlib export --model BUNDLE --out model.onnx

Only :mod:`argparse` is imported here; each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def _cmd_report(args: argparse.Namespace) -> int:
    from adlib import report

    return report.run_from_args(args)


def _cmd_data_list(args: argparse.Namespace) -> int:
    from adlib.data.download import REGISTRY, registry_table

    rows = registry_table()
    columns = ["name", "archive", "size", "checksum", "licence"]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    print("  ".join("-" * widths[c] for c in columns))
    for row in rows:
        print("  ".join(row[c].ljust(widths[c]) for c in columns).rstrip())
        if args.verbose:
            entry = REGISTRY[row["name"]]
            print(f"    url:    {row['url']}")
            print(f"    reader: {entry.reader}")
            if not entry.sha256:
                print(f"    no checksum: {entry.hash_note}")
    return 0


def _cmd_data_fetch(args: argparse.Namespace) -> int:
    from adlib.data.download import DownloadError, fetch

    try:
        path = fetch(
            args.name,
            root=args.root,
            url=args.url,
            known_hash=args.known_hash,
            progress=not args.no_progress,
            allow_unverified=args.allow_unverified,
        )
    except DownloadError as exc:
        print(f"adlib data fetch: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from adlib.data.synthetic import ensure_synthetic

    try:
        path = ensure_synthetic(args.kind, category=args.category, size=args.size, seed=args.seed)
    except ValueError as exc:
        print(f"adlib data synth: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def _cmd_weights_list(args: argparse.Namespace) -> int:
    from adlib.features.weights import WEIGHTS

    for e in WEIGHTS.values():
        where = f"package {e.package}" if e.package else e.url
        print(f"{e.name:20s} {e.size_mb:6.1f} MB  sha256 {e.sha256[:16]}{'...' if len(e.sha256) > 16 else ''}  "
              f"{e.licence}\n{'':20s} from {where}")
    return 0


def _cmd_weights_fetch(args: argparse.Namespace) -> int:
    from adlib.features.weights import WeightsError, weights_file

    try:
        path = weights_file(args.name, download=True, folder=args.folder, url=args.url,
                            progress=not args.no_progress)
    except WeightsError as exc:
        print(f"adlib weights fetch: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from adlib import score_cli

    return score_cli.run_from_args(args)


def _cmd_export(args: argparse.Namespace) -> int:
    from adlib.bundle import BundleError
    from adlib.export import export_onnx

    try:
        path, report = export_onnx(args.model, args.out)
    except (BundleError, ImportError, RuntimeError) as exc:
        print(f"adlib export: {exc}", file=sys.stderr)
        return 1
    print(f"{path}: largest difference to the eager network {report['max_abs_diff']:.2e}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``adlib`` argument parser (sub-commands ``report``, ``data``, ``weights``, ``score``, ``export``)."""
    from adlib import report, score_cli

    parser = argparse.ArgumentParser(prog="adlib", description="adlib course tools")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rep = commands.add_parser("report", help="run the notebooks headless and build the HTML report")
    report.add_arguments(rep)
    rep.set_defaults(func=_cmd_report)

    data = commands.add_parser("data", help="list, download or generate datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    listing = data_commands.add_parser("list", help="the dataset registry")
    listing.add_argument("--verbose", "-v", action="store_true", help="show URLs, readers, checksum notes")
    listing.set_defaults(func=_cmd_data_list)

    get = data_commands.add_parser("fetch", help="download, verify and extract a registry dataset")
    get.add_argument("name", help="registry name (see `adlib data list`)")
    get.add_argument("--root", default=None, help="data root (default: $ADLIB_DATA or data/)")
    get.add_argument("--url", default=None, help="download from this URL instead (mirror)")
    get.add_argument("--known-hash", default=None, help="expected sha256 hex, or md5:<hex>")
    get.add_argument("--allow-unverified", action="store_true", help="accept an entry with no published checksum")
    get.add_argument("--no-progress", action="store_true", help="no progress bar")
    get.set_defaults(func=_cmd_data_fetch)

    synth = data_commands.add_parser("synth", help="generate (or reuse) a synthetic stand-in dataset")
    synth.add_argument("kind", help="layout: mvtec, dagm, rsdd or sem")
    synth.add_argument("--category", default=None, help="category / class (default: the generator's)")
    synth.add_argument("--size", default="default", help="tiny (tests) or default (CPU profile)")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(func=_cmd_data_synth)

    weights = commands.add_parser("weights", help="pretrained backbone weights (chapter 06)")
    weight_commands = weights.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    wlist = weight_commands.add_parser("list", help="the backbones, where their weights come from")
    wlist.set_defaults(func=_cmd_weights_list)
    wget = weight_commands.add_parser("fetch", help="download (if needed) and verify a backbone's weights")
    wget.add_argument("name", help="backbone (see `adlib weights list`)")
    wget.add_argument("--folder", default=None, help="where downloads go (default: $ADLIB_DATA/weights)")
    wget.add_argument("--url", default=None, help="download from this URL instead (mirror)")
    wget.add_argument("--no-progress", action="store_true", help="no progress bar")
    wget.set_defaults(func=_cmd_weights_fetch)

    score = commands.add_parser("score", help="score a folder of images with a trained model bundle")
    score_cli.add_arguments(score)
    score.set_defaults(func=_cmd_score)
    export = commands.add_parser("export", help="export a model bundle's network to ONNX (checked for parity)")
    export.add_argument("--model", required=True, help="a model bundle (<results name>.model.pt)")
    export.add_argument("--out", required=True, help="the .onnx file to write")
    export.set_defaults(func=_cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``adlib`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
