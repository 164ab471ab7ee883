"""Annotation class names -> project classes (index = position in `cfg.project.classes`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from autoscope.errors import UserError


class ClassMapper:
    """Maps names found in annotations to project class indices.

    A name matches a project class exactly or case-insensitively; other names need an entry in
    `dataset.class_map` (`name: project_class`, or `name: null` to drop that class).
    """

    def __init__(self, classes: Iterable[Any], class_map: Mapping[str, Any] | None = None) -> None:
        self.names = [str(c["name"] if isinstance(c, Mapping) else c) for c in classes]
        self._lower = {n.lower(): i for i, n in enumerate(self.names)}
        self._map: dict[str, str | None] = {}
        for k, v in dict(class_map or {}).items():
            if v is not None and str(v).lower() not in self._lower:
                raise UserError(
                    f"dataset.class_map: '{k}: {v}' maps to '{v}', which is not a project class "
                    f"({', '.join(self.names)})"
                )
            self._map[str(k).lower()] = None if v is None else str(v)

    def index(self, name: str, where: str) -> int | None:
        """Class index of an annotation name; None when the class_map drops it.

        Args:
            name: class name as written in the annotation.
            where: file and feature, for the error message.

        Raises:
            UserError: the name is neither a project class nor in `dataset.class_map`.
        """
        key = str(name).lower()
        if key in self._map:
            target = self._map[key]
            return None if target is None else self._lower[target.lower()]
        if key in self._lower:
            return self._lower[key]
        raise UserError(
            f"{where}: unknown class '{name}' (project classes: {', '.join(self.names)}; "
            f"map it with dataset.class_map)"
        )
