"""`autoscope`: argv -> a stage; actions run as Hydra apps, views compose and take flags.

The stage table is lazy: `autoscope --help` imports nothing heavy (no torch, mlflow, bentoml, dvc).
Actions take a recipe and Hydra overrides; views take a recipe and plain flags.
"""

from __future__ import annotations

import os
import re
import sys

from autoscope.commands import STAGES  # the lazy stage table (plain data)

_OVERRIDE = re.compile(r"^[+~]{0,2}[\w./@-]+=")  # a Hydra override: key=value, +key=value, ~key


def _usage() -> str:
    from autoscope.config import list_recipes

    lines = ["usage: autoscope <stage> [<verb>] <recipe> [key=value ...] [flags]", "", "stages:"]
    for (stage, verb), (_, _, text) in STAGES.items():
        lines.append(f"  {(stage + ' ' + verb).strip():<16} {text}")
    lines += ["", "recipes: " + (", ".join(list_recipes()) or "none"), ""]
    lines.append("examples: autoscope slides ingest demo 'slides.sources=[/data/wsi]'")
    lines.append(
        "          autoscope train demo -m model=small_cnn,resnet18 trainer.batch_size=64,128"
    )
    lines.append(
        "          autoscope train demo -m hpo=small hydra/launcher=joblib hydra.launcher.n_jobs=2"
    )
    lines.append(
        "          autoscope train demo --cfg job      (any Hydra flag: --help, --info, -m ...)"
    )
    return "\n".join(lines)


def _split(args: list[str]) -> tuple[list[str], list[str]]:
    """Separate Hydra overrides (`key=value`) from view flags (`--flag value`, positionals)."""
    overrides: list[str] = []
    flags: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("-"):
            flags.append(a)
            nxt = args[i + 1] if i + 1 < len(args) else "-"
            if "=" not in a and not nxt.startswith("-") and not _OVERRIDE.match(nxt):
                flags.append(nxt)
                i += 1
        else:
            (overrides if _OVERRIDE.match(a) else flags).append(a)
        i += 1
    return overrides, flags


def _unbalanced(value: str) -> bool:
    """Whether an override's value opens a list, dict or quote it does not close."""
    rest = re.sub(r"\"[^\"]*\"|'[^']*'", "", value)  # quoted text may hold anything
    return (
        rest.count("[") > rest.count("]")
        or rest.count("{") > rest.count("}")
        or "'" in rest
        or '"' in rest
    )


def _split_by_shell(args: list[str], action: bool) -> str | None:
    """A hint when the shell split an unquoted override with spaces, e.g. a path (else None).

    `slides.sources=[/data/my slides]` reaches us as `slides.sources=[/data/my` and `slides]`:
    an override whose list, dict or quote is left open, or (for actions, which take no
    positional words) an override followed by bare words.
    """
    for i, a in enumerate(args):
        if a.startswith("-") or not _OVERRIDE.match(a):
            continue
        j = i + 1
        if _unbalanced(a.split("=", 1)[1]):
            while j < len(args) and _unbalanced(" ".join(args[i:j]).split("=", 1)[1]):
                j += 1
        elif action:
            while j < len(args) and not args[j].startswith("-") and not _OVERRIDE.match(args[j]):
                j += 1
        if j > i + 1:
            joined = " ".join(args[i:j])
            pieces = " ".join(repr(x) for x in args[i:j])
            q = "'" if '"' in joined else '"'  # the shell quote that keeps the value as it is
            return (
                f"the shell split an override at its spaces into {pieces}: "
                f"quote the whole override, e.g. {q}{joined}{q}"
            )
    return None


def _fail(msg: str, code: int = 2) -> int:
    print(f"autoscope: error: {msg}", file=sys.stderr)
    return code


def _complete(argv: list[str]) -> int:
    """Shell completion (Hydra's script calls `autoscope -sc query=bash` with COMP_LINE set).

    Stage, verb and recipe words are completed here; what follows the recipe is Hydra's to
    complete (groups, choices, keys), so COMP_LINE is handed on without the stage words.
    """
    line = os.environ["COMP_LINE"]
    words = line.split()[1:]
    if line.endswith(" "):
        words.append("")
    stages = sorted({s for s, _ in STAGES})
    if len(words) <= 1:
        print(" ".join(s for s in stages if s.startswith(words[0] if words else "")))
        return 0
    stage, rest = words[0], words[1:]
    verbs = sorted(v for (s, v) in STAGES if s == stage and v)
    verb = ""
    if verbs and "" not in {v for (s, v) in STAGES if s == stage}:
        if len(rest) <= 1:
            print(" ".join(v for v in verbs if v.startswith(rest[0])))
            return 0
        verb, rest = rest[0], rest[1:]
    if len(rest) <= 1 or (stage, verb) not in STAGES:
        from autoscope.config import list_recipes

        print(" ".join(r for r in list_recipes() if r.startswith(rest[0] if rest else "")))
        return 0
    target, kind, _ = STAGES[(stage, verb)]
    if kind != "action":
        return 0
    os.environ["COMP_LINE"] = "autoscope " + " ".join(rest[1:])
    os.environ["COMP_POINT"] = str(len(os.environ["COMP_LINE"]))
    from autoscope.stages.app import run_app

    name = f"{stage}_{verb}" if verb else stage
    return run_app(name, target, rest[0], argv, prog=f"autoscope {stage} {rest[0]}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `autoscope` console script.

    Actions run as Hydra apps (`autoscope.stages.app`): everything after the recipe is Hydra's own
    command line (`-m`, `--cfg job`, `hydra/launcher=joblib`, overrides). Views compose the recipe
    with the overrides given and take plain flags.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-sc", "--shell-completion") and "COMP_LINE" in os.environ:
        return _complete(argv)
    stage = argv.pop(0)
    verbs = {v for (s, v) in STAGES if s == stage}
    if not verbs:
        return _fail(f"unknown stage '{stage}' (see autoscope --help)")
    verb = ""
    if "" not in verbs or (argv and argv[0] in verbs):
        if not argv or argv[0] not in verbs:
            return _fail(f"'{stage}' needs one of: {', '.join(sorted(verbs))}")
        verb = argv.pop(0)
    shown = (stage + " " + verb).strip()
    target, kind, _ = STAGES[(stage, verb)]
    from autoscope.errors import UserError

    if kind == "command":
        import importlib

        mod_name, fn_name = target.split(":")
        try:
            return int(getattr(importlib.import_module(mod_name), fn_name)(argv) or 0)
        except UserError as e:
            return _fail(str(e))
    if not argv or argv[0].startswith("-") or "=" in argv[0]:
        return _fail(f"'{shown}' needs a recipe first (see autoscope --help)")
    recipe = argv.pop(0)
    name = f"{stage}_{verb}" if verb else stage
    if hint := _split_by_shell(argv, kind == "action"):
        return _fail(hint)
    if kind == "action":
        from autoscope.stages.app import run_app

        return run_app(name, target, recipe, argv, prog=f"autoscope {shown} {recipe}")
    overrides, flags = _split(argv)
    try:
        from autoscope.config import compose

        cfg = compose(recipe, overrides)
        mod_name, fn_name = target.split(":")
        import importlib

        getattr(importlib.import_module(mod_name), fn_name)(cfg, flags)
    except UserError as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    return 0


if __name__ == "__main__":
    sys.exit(main())
