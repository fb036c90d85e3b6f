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
        self._failed: dict[str, MapError] = {}  # towns whose map did not load: the same error again, at once

    def find(self, town: str) -> Path | None:
        if self.maps_dir is None:
            return None
        for cand in (self.maps_dir / f"{town}.xodr", *self.maps_dir.glob(f"**/{town}.xodr")):
            if cand.is_file():
                return cand
        return None

    def available(self, town: str) -> bool:
        return bool(PROCEDURAL.match(town)) or self.find(town) is not None

    def missing_reason(self, town: str) -> str:
        """Why `town` is not available, and the fix."""
        if self.maps_dir is None:
            return (f"map {town}.xodr not found: no maps directory (pass --maps-dir DIR, or set DRIVE_STACK_MAPS "
                    f"or CARLA_ROOT)")
        return f"map {town}.xodr not found in {self.maps_dir}"

    def xodr_text(self, town: str) -> str:
        """The town's OpenDRIVE text (what /carla/world_info carries)."""
        m = PROCEDURAL.match(town)
        if m:
            from .procedural import generate_town_xodr

            return generate_town_xodr(int(m.group(1)))
        path = self.find(town)
        if path is None:
            raise MissingMap(self.missing_reason(town))
        return path.read_text(encoding="utf-8", errors="replace")

    def load(self, town: str) -> LaneGraph:
        """The town's lane graph. A map that does not load (MapError: malformed, or it crashed CARLA's parser,
        which runs in a child process) raises the same error on every later call without trying again."""
        if town in self._memo:
            return self._memo[town]
        if town in self._failed:
            raise self._failed[town]
        m = PROCEDURAL.match(town)
        try:
            if m:
                from .procedural import generate_town_xodr

                g = load_xodr_text(town, generate_town_xodr(int(m.group(1))), source=f"procedural town {town}")
            else:
                path = self.find(town)
                if path is None:
                    raise MissingMap(self.missing_reason(town))
                g = load_xodr(path, town)
        except MapError as e:
            self._failed[town] = e
            raise
        self._memo[town] = g
        return g


__all__ = ["MapError", "MissingMap", "TownLoader", "default_maps_dir"]
