"""`autoscope studio <recipe> [studio.port=N]`: serve the Studio on 127.0.0.1 until Ctrl-C."""

from __future__ import annotations

import threading
from typing import Any

from autoscope.errors import UserError


def studio_spec(cfg: Any) -> Any:
    """The typed `StudioSpec` of `cfg.studio` (defaults in conf/studio/default.yaml)."""
    from autoscope.config import to_dict
    from autoscope.studio.settings import StudioSpec

    d = to_dict(cfg.get("studio")) or {}
    fields = StudioSpec.__dataclass_fields__
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise UserError(f"studio.{unknown[0]}: not a Studio setting ({', '.join(fields)})")
    return StudioSpec(**{k: type(getattr(StudioSpec, k))(v) for k, v in d.items()})


def context(cfg: Any, recipe: str) -> Any:
    """The `StudioContext` of a composed recipe (its compose helper is thread-safe)."""
    from autoscope.config import compose, project_spec, stores_spec, to_dict
    from autoscope.studio.settings import StudioContext

    lock = threading.Lock()
    base = [f"paths.workspace={cfg.paths.workspace}"]

    def composed(overrides: list[str]) -> dict:
        from hydra.core.global_hydra import GlobalHydra

        with lock:
            GlobalHydra.instance().clear()  # the Studio's own Hydra app is initialised
            return to_dict(compose(recipe, [*base, *overrides]))

    return StudioContext(
        recipe=recipe,
        project=project_spec(cfg),
        stores=stores_spec(cfg),
        spec=studio_spec(cfg),
        config=to_dict(cfg),
        compose=composed,
    )


def run(cfg: Any) -> dict:
    """Serve the Studio of the recipe until interrupted."""
    import uvicorn
    from hydra.core.hydra_config import HydraConfig

    from autoscope.procs import port_holder
    from autoscope.studio.app import create_app

    hc = HydraConfig.get()
    recipe = str(hc.job.config_name)
    for src in hc.runtime.config_sources:  # a recipe given as a path runs as that path
        if src.provider == "main" and src.path.startswith("file://"):
            path = f"{src.path[len('file://') :]}/{recipe}.yaml"
            from pathlib import Path

            if Path(path).is_file() and Path(path).parent.name != "recipes":
                recipe = path
    ctx = context(cfg, recipe)
    spec = ctx.spec
    holder = port_holder(spec.host, spec.port)
    if holder is not None:
        raise UserError(
            f"autoscope studio: port {spec.port} on {spec.host} is held by {holder}: "
            "stop it or pick another (studio.port=N)"
        )
    print(
        f"AutoSCOPE Studio of project {ctx.project.name}: http://{spec.host}:{spec.port}/",
        flush=True,
    )
    uvicorn.run(create_app(ctx), host=spec.host, port=spec.port, log_level="warning")
    return {"url": f"http://{spec.host}:{spec.port}/"}
