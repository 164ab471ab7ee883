"""`autoscope init`, `autoscope pipeline add|list|fingerprint`, `autoscope demo generate`.

Commands without a recipe: they act on a workspace folder (`init <dir>`) or on the workspace
the command runs in (the current folder, as `dvc` does).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from autoscope.errors import UserError


def _parse(prog: str, argv: list[str], add) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, exit_on_error=False)
    add(p)
    try:
        return p.parse_args(argv)
    except argparse.ArgumentError as e:
        raise UserError(f"{prog}: {e}") from None


def init_command(argv: list[str]) -> int:
    """`autoscope init <dir> [--remote URL] [--demo]`."""
    from autoscope import workspace

    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("dir", help="the workspace folder (created if missing)")
        p.add_argument("--remote", default=None, help="default DVC remote (URL or folder)")
        p.add_argument("--demo", action="store_true", help="put the embedded demo on it")

    args = _parse("autoscope init", argv, add)
    root = Path(args.dir)
    done = workspace.init(root, remote=args.remote, demo=args.demo)
    what = ", ".join(done) if done else "nothing missing"
    print(f"workspace {root.resolve()}: {what}")
    if args.demo:
        print(f"next: cd {args.dir} && dvc repro")
    else:
        print(
            f"next: cd {args.dir}, write recipes/<name>.yaml (see `autoscope --help` for the "
            "built-in demo), `autoscope pipeline add <name>`, then `dvc repro`"
        )
    return 0


def add_command(argv: list[str]) -> int:
    """`autoscope pipeline add <recipe> ...` in the current workspace."""
    from autoscope import workspace

    if not argv:
        raise UserError("pipeline add: name a recipe of recipes/ (autoscope pipeline add demo)")
    root = Path.cwd()
    for recipe in argv:
        e = workspace.add(root, recipe)
        sweep = f"sweep {e['study']}" if e["study"] else "one training run"
        print(
            f"pipeline: {recipe} -> ingest@{e['project']}, "
            f"dataset@{e['project']}-{e['dataset']}, train@{recipe} ({sweep}), "
            f"archive@{recipe}, package@{recipe}, infer@{recipe}"
        )
    return 0


def list_command(argv: list[str]) -> int:
    """`autoscope pipeline list`: the recipes on the current workspace's pipeline."""
    from autoscope import workspace

    recipes = workspace.read_pipeline(Path.cwd())
    if not recipes:
        print("no recipe on the pipeline yet (autoscope pipeline add <recipe>)")
    for name, e in sorted(recipes.items()):
        print(f"{name:<16} project {e['project']}, dataset {e['dataset']}, train: {e['train']}")
    return 0


def fingerprint_command(argv: list[str]) -> int:
    """`autoscope pipeline fingerprint`: what each stage of each recipe depends on."""
    from autoscope import workspace
    from autoscope.config import compose_with_choices
    from autoscope.fingerprint import write_all

    root = Path.cwd()
    recipes = sorted(workspace.read_pipeline(root))
    changed = write_all(root, recipes, compose_with_choices)
    print(f"fingerprint: {len(recipes)} recipe(s), {len(changed)} stage file(s) changed")
    for c in changed:
        print(f"  {c}")
    return 0


def demo_data_command(argv: list[str]) -> int:
    """`autoscope demo generate`: the demo's raw slides and metadata in `data/demo/raw`."""
    from autoscope.demo import generate

    print("generating the demo slides (deterministic) ...", flush=True)
    generate(Path.cwd() / "data" / "demo" / "raw")
    return 0
