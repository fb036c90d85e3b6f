"""Finding a town's map: a maps directory (``--maps-dir``, default ``$CARLA_ROOT``'s OpenDRIVE folder),
or a procedural town named ``Proc<seed>`` generated on the fly (no CARLA needed)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .lanegraph import LaneGraph
from .opendrive import MapError, load_xodr, load_xodr_text

PROCEDURAL = re.compile(r"^Proc(\d+)$")


class MissingMap(LookupError):
    """The town's OpenDRIVE file is not in the maps directory (a route on it is skipped, not failed)."""


def default_maps_dir() -> Path | None:
    """$DRIVE_STACK_MAPS, else $CARLA_ROOT/CarlaUE4/Content/Carla/Maps/OpenDrive, else None."""
    env = os.environ.get("DRIVE_STACK_MAPS")
    if env:
        return Path(env)
    root = os.environ.get("CARLA_ROOT")
    if root:
        for sub in ("CarlaUE4/Content/Carla/Maps/OpenDrive", "Unreal/CarlaUE4/Content/Carla/Maps/OpenDrive"):
            if (Path(root) / sub).is_dir():
                return Path(root) / sub
    return None


class TownLoader:
    """Loads towns by name with an in-process memo; procedural towns need no maps directory."""

    def __init__(self, maps_dir: str | Path | None = None):
        self.maps_dir = Path(maps_dir) if maps_dir else default_maps_dir()
        self._memo: dict[str, LaneGraph] = {}

    def find(self, town: str) -> Path | None:
        if self.maps_dir is None:
            return None
        for cand in (self.maps_dir / f"{town}.xodr", *self.maps_dir.glob(f"**/{town}.xodr")):
            if cand.is_file():
                return cand
        return None

    def available(self, town: str) -> bool:
        return bool(PROCEDURAL.match(town)) or self.find(town) is not None

    def xodr_text(self, town: str) -> str:
        """The town's OpenDRIVE text (what /carla/map carries)."""
        m = PROCEDURAL.match(town)
        if m:
            from .procedural import generate_town_xodr

            return generate_town_xodr(int(m.group(1)))
        path = self.find(town)
        if path is None:
            raise MissingMap(f"map {town}.xodr not found in {self.maps_dir}")
        return path.read_text(encoding="utf-8", errors="replace")

    def load(self, town: str) -> LaneGraph:
        if town in self._memo:
            return self._memo[town]
        m = PROCEDURAL.match(town)
        if m:
            from .procedural import generate_town_xodr

            g = load_xodr_text(town, generate_town_xodr(int(m.group(1))), source=f"procedural town {town}")
        else:
            path = self.find(town)
            if path is None:
                where = self.maps_dir if self.maps_dir else "(no maps dir: pass --maps-dir or set CARLA_ROOT)"
                raise MissingMap(f"map {town}.xodr not found in {where}")
            g = load_xodr(path, town)
        self._memo[town] = g
        return g


__all__ = ["MapError", "MissingMap", "TownLoader", "default_maps_dir"]
