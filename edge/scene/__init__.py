"""Scene geometry of one camera: zones, counting lines, the floor plan, paths and occupancy."""

from storelens.edge.scene.floor import FloorPlan
from storelens.edge.scene.lines import CountingLine, LineSide
from storelens.edge.scene.occupancy import OccupancyClock
from storelens.edge.scene.paths import FloorPath, simplify
from storelens.edge.scene.zones import Zone, ZonePresence, ZoneStay

__all__ = [
    "CountingLine",
    "FloorPath",
    "FloorPlan",
    "LineSide",
    "OccupancyClock",
    "Zone",
    "ZonePresence",
    "ZoneStay",
    "simplify",
]
