"""A user's workspace: a git + DVC repository with its own recipes, pipeline and data.

`autoscope init <dir>` makes one: `recipes/`, `pipeline.yaml` (the recipes `dvc.yaml` runs),
`dvc.yaml` (DVC `foreach` stages templated over `pipeline.yaml`), `.gitignore`, `.dvcignore`,
and optionally a DVC remote. `autoscope pipeline add <recipe>` puts a recipe on the assembly
line; every stage is then `autoscope <stage> <recipe>` run by `dvc repro` / `dvc exp run`.
The autoscope source tree is never a workspace: the demo runs in `workspaces/demo`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from autoscope.atomic import write_text
from autoscope.errors import UserError

PIPELINE = "pipeline.yaml"
TEMPLATES = Path(__file__).resolve().parent / "templates"  # dvc.yaml and the demo's stage
# top-level blocks of a recipe that stages read, tracked as DVC params (each present, maybe `{}`)
STAGE_PARAMS: dict[str, tuple[str, ...]] = {
    "ingest": ("slides", "tissue"),
    "dataset": ("dataset", "corrections"),
    "train": ("model", "trainer", "hpo"),
    "archive": ("archive",),
    "package": ("package",),
    "infer": ("infer",),
    "refine": ("refine", "loop"),
    "select": ("select",),
}
CORRECTIONS = "corrections"  # <workspace>/corrections/<dataset>/round_<N>/: edited QuPath files


def _run(cmd: list[str], cwd: Path) -> str:
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=True)
    except FileNotFoundError:
        raise UserError(f"{cmd[0]}: not found on PATH (git must be installed)") from None
    except subprocess.CalledProcessError as e:
        msg = (e.stderr or e.stdout or "").strip().splitlines()
        raise UserError(f"{' '.join(cmd)} in {cwd}: {msg[-1] if msg else e.returncode}") from None
    return out.stdout


def _dvc() -> str:
    import sys

    here = Path(sys.executable).parent / "dvc"
    return str(here) if here.is_file() else "dvc"


def init(root: Path, remote: str | None = None, demo: bool = False) -> list[str]:
    """Make (or complete) a workspace at `root`; return one line per thing done.

    Existing files are kept, so running it again only fills in what is missing (and sets the
    remote when one is given).

    Args:
        root: the workspace folder (created if missing).
        remote: a DVC remote URL or folder, made the default remote `storage`.
        demo: also put the embedded demo on the pipeline (its data generation stage included).

    Raises:
        UserError: git or dvc fails (one line), or `root` lies inside the autoscope source tree
            without being ignored by it.
    """
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    done: list[str] = []
    if not (root / ".git").exists():
        _run(["git", "init", "-q"], root)
        done.append("git repository")
    if not (root / ".dvc").is_dir():
        _run([_dvc(), "init", "-q"], root)
        _run([_dvc(), "config", "core.autostage", "true"], root)
        _run([_dvc(), "config", "hydra.enabled", "true"], root)  # dvc exp run -S 'model=x'
        _run([_dvc(), "config", "hydra.config_dir", "recipes"], root)
        done.append("DVC repository (autostage on, Hydra composition of recipes/)")
    for name in (".gitignore", ".dvcignore"):  # templates/gitignore.txt, dvcignore.txt
        text = (TEMPLATES / f"{name[1:]}.txt").read_text()
        if not (root / name).is_file() or "autoscope" not in (root / name).read_text():
            old = (root / name).read_text() if (root / name).is_file() else ""
            write_text(root / name, text + old)
            done.append(name)
    (root / "recipes").mkdir(exist_ok=True)
    if not (root / PIPELINE).is_file():
        write_text(root / PIPELINE, _pipeline_text({}))
        done.append(PIPELINE)
    want = (TEMPLATES / "dvc.yaml").read_text()
    if demo:
        want = want.replace("stages:\n", "stages:\n" + (TEMPLATES / "demo_stage.yaml").read_text())
    if not (root / "dvc.yaml").is_file():
        write_text(root / "dvc.yaml", want)
        done.append("dvc.yaml")
    if demo:
        from autoscope.config import BUILTIN_RECIPES

        if not (root / "recipes" / "demo.yaml").is_file():
            shutil.copy(BUILTIN_RECIPES / "demo.yaml", root / "recipes" / "demo.yaml")
            done.append("recipes/demo.yaml")
        if "demo" not in read_pipeline(root):
            add(root, "demo")
            done.append("demo on the pipeline")
    if remote:
        _run([_dvc(), "remote", "add", "-f", "-d", "storage", remote], root)
        done.append(f"DVC remote 'storage' -> {remote}")
    if _commit(root, "autoscope init"):
        done.append("first commit")
    return done


def _commit(root: Path, message: str) -> bool:
    """Commit the workspace's files when the repository has no commit yet (`dvc exp` needs one)."""
    try:
        _run(["git", "rev-parse", "--verify", "-q", "HEAD"], root)
        return False
    except UserError:
        return commit(root, message)


def commit(root: Path, message: str) -> bool:
    """Commit everything of the workspace git does not ignore; False when nothing changed.

    A machine without a git identity commits as `autoscope <autoscope@localhost>`.
    """
    _run(["git", "add", "-A"], root)
    staged = subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=root, capture_output=True)
    head = ["git", "rev-parse", "--verify", "-q", "HEAD"]
    has_head = subprocess.run(head, cwd=root, capture_output=True)
    if staged.returncode == 0 and has_head.returncode == 0:
        return False
    who = []
    if not subprocess.run(["git", "config", "user.email"], cwd=root, capture_output=True).stdout:
        who = ["-c", "user.name=autoscope", "-c", "user.email=autoscope@localhost"]
    _run(["git", *who, "commit", "-q", "-m", message], root)
    return True


def read_pipeline(root: Path) -> dict[str, dict[str, Any]]:
    """The recipes of the workspace's pipeline (`pipeline.yaml`), by name."""
    import yaml

    p = root / PIPELINE
    if not p.is_file():
        raise UserError(f"{root}: not an autoscope workspace (no {PIPELINE}; run `autoscope init`)")
    data = yaml.safe_load(p.read_text()) or {}
    return dict(data.get("recipes") or {})


def _pipeline_text(recipes: dict[str, dict[str, Any]]) -> str:
    import yaml

    head = (
        "# The recipes dvc.yaml runs end to end (stage@<recipe>): `autoscope pipeline add`\n"
        "# Paths are relative to the workspace. A recipe's slides live in its `raw` folder.\n"
    )
    by_project: dict[str, dict[str, Any]] = {}
    by_dataset: dict[str, dict[str, Any]] = {}
    for name, e in sorted(recipes.items()):
        by_project.setdefault(e["project"], {"recipe": name, "raw": e["raw"]})
        keep = {k: e[k] for k in ("project", "dataset", "raw")}
        by_dataset.setdefault(f"{e['project']}-{e['dataset']}", {"recipe": name, **keep})
    loops = {  # the loop's stages (refine, select) for patch-label recipes ("loops": the
        # composed recipe's own `loop` block lands in DVC's vars in hydra mode)
        name: {k: e[k] for k in ("project", "dataset", "model")}
        for name, e in sorted(recipes.items())
        if e.get("loop")
    }
    body = {"recipes": recipes, "projects": by_project, "datasets": by_dataset, "loops": loops}
    return head + yaml.safe_dump(body, sort_keys=True)


def _raw_folder(root: Path, sources: list[str], recipe: str) -> str:
    """The workspace folder holding a recipe's slides (its ingest dependency).

    The common folder of the sources inside the workspace; the recipe file itself when every
    source lies outside (slides referenced where they lie are not hashed by DVC).
    """
    import os

    from autoscope.portable import resolve_path

    inside = []
    for s in sources:
        base = s.split("*")[0].rstrip("/") or "."
        try:
            full = resolve_path(base, root).resolve()
            inside.append(full.relative_to(Path(root).resolve()).as_posix())
        except ValueError:
            continue
    if not inside:
        return f"recipes/{recipe}.yaml"
    common = os.path.commonpath(inside)
    if common in ("", ".") or common.startswith(("outputs", ".")):
        return f"recipes/{recipe}.yaml"
    return common


def entry(root: Path, recipe: str) -> dict[str, Any]:
    """The pipeline entry of a workspace recipe: its project, dataset, train command and outputs."""
    from autoscope.config import compose
    from autoscope.tasks import family

    cfg = compose(recipe, [f"paths.workspace={root}"])
    project, dataset = str(cfg.project.name), cfg.dataset.get("name")
    if not dataset:
        raise UserError(f"recipe '{recipe}': no dataset selected (override dataset: <name>)")
    raw = _raw_folder(root, [str(s) for s in cfg.slides.get("sources") or []], recipe)
    study = (cfg.get("hpo") or {}).get("study_name")
    out = f"outputs/{project}"
    sweep_dir = f"{out}/hpo/{study}"
    return {
        "project": project,
        "dataset": str(dataset),
        "raw": raw,
        "model": str(cfg.archive.model_name),
        "package": str(cfg.package.name),
        "study": str(study) if study else None,
        "train": (
            f"autoscope train {recipe} -m hpo.storage=sqlite:///{sweep_dir}/study.db"
            if study
            else f"autoscope train {recipe} hydra.run.dir={out}/train/pipeline/{recipe}"
        ),
        "train_dir": sweep_dir if study else f"{out}/train/pipeline/{recipe}",
        "report": f"{out}/pipeline/{recipe}",
        "loop": family(str(cfg.project.task)) == "classification",
    }


def add(root: Path, recipe: str) -> dict[str, Any]:
    """Put `recipes/<recipe>.yaml` on the pipeline: its stage blocks and its `pipeline.yaml` entry.

    Blocks the stages read (`slides`, `model`, `trainer` ...) are added to the recipe as `{}` where
    missing, so each stage can declare them as DVC params.

    A built-in recipe (`demo_seg`, `demo_cells` ...) missing from the workspace is copied into
    its `recipes/` first: the pipeline tracks the workspace's copy.

    Raises:
        UserError: the recipe is neither in the workspace's `recipes/` nor built in, or its
            outputs would collide with another recipe's (same project and model name).
    """
    from autoscope.config import BUILTIN_RECIPES

    path = root / "recipes" / f"{recipe}.yaml"
    if not path.is_file() and (BUILTIN_RECIPES / f"{recipe}.yaml").is_file():
        path.parent.mkdir(exist_ok=True)
        write_text(path, (BUILTIN_RECIPES / f"{recipe}.yaml").read_text())
    if not path.is_file():
        raise UserError(f"pipeline add: no recipes/{recipe}.yaml in {root} (nor a built-in one)")
    _ensure_blocks(path)
    recipes = read_pipeline(root)
    e = entry(root, recipe)
    for other, o in recipes.items():
        if other != recipe and (o["project"], o["model"]) == (e["project"], e["model"]):
            raise UserError(
                f"pipeline add {recipe}: recipe '{other}' already archives "
                f"{e['project']}/{e['model']}: give one of them another archive.model_name"
            )
    recipes[recipe] = e
    write_text(root / PIPELINE, _pipeline_text(recipes))
    readme = root / CORRECTIONS / e["dataset"] / "README.md"
    if not readme.is_file():  # the dataset stage's dependency: where corrections come back
        write_text(
            readme,
            (TEMPLATES / "corrections.md").read_text().format(dataset=e["dataset"], recipe=recipe),
        )
    from autoscope.dvc_hydra import hydra_settings

    hydra = hydra_settings(root)
    if hydra is not None and "config_name" not in hydra:  # `dvc exp run -S k=v` composes it
        _run([_dvc(), "config", "hydra.config_name", recipe], root)
    return e


def _ensure_blocks(path: Path) -> None:
    """Append `<block>: {}` for each stage block the recipe lacks (its text is kept as it is)."""
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    missing = [k for keys in STAGE_PARAMS.values() for k in keys if k not in data]
    if missing:
        text = path.read_text().rstrip("\n") + "\n\n# blocks the pipeline tracks as params\n"
        write_text(path, text + "".join(f"{k}: {{}}\n" for k in missing))
