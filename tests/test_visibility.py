"""The visibility model: range and occlusion by vehicle footprints (hand-built scenes with known answers)."""

import numpy as np
from drivesim.sim.perception import PERCEPTION_RANGE, visibility
from drivesim.sim.state import AgentKind

CAR = (4.6, 1.9, AgentKind.VEHICLE)
PED = (0.5, 0.5, AgentKind.PEDESTRIAN)
TRUCK = (8.0, 3.0, AgentKind.VEHICLE)


def seen(*agents, occlusion=True):
    """Sensor at the origin; agents: (x, y, (length, width, kind)), yaw 0. Returns the visibility of each."""
    x = np.array([[a[0] for a in agents]], float)
    y = np.array([[a[1] for a in agents]], float)
    length = np.array([[a[2][0] for a in agents]], float)
    width = np.array([[a[2][1] for a in agents]], float)
    kind = np.array([[a[2][2] for a in agents]], np.int8)
    valid = np.ones_like(x, bool)
    return visibility(x, y, np.zeros_like(x), length, width, kind, valid, np.zeros(1), np.zeros(1),
                      occlusion=occlusion)[0].tolist()


def test_pedestrian_behind_a_parked_car_is_hidden():
    assert seen((10, 0, CAR), (15, 0, PED)) == [True, False]
    assert seen((10, 0, CAR), (15, 0, PED), occlusion=False) == [True, True]


def test_what_is_beside_or_in_front_of_a_car_is_seen():
    assert seen((10, 0, CAR), (15, 5, PED), (5, 0, PED)) == [True, True, True]


def test_a_pedestrian_does_not_occlude_a_car():
    assert seen((3, 0, PED), (10, 0, CAR)) == [True, True]


def test_range():
    r = PERCEPTION_RANGE
    assert seen((r - 1, 0, CAR), (r + 1, 0, CAR)) == [True, False]


def test_partly_visible_truck_is_seen_and_two_cars_together_hide_it():
    # each car alone leaves part of the truck in view; side by side they cover its whole angular span
    assert seen((10, 0.9, CAR), (20, 0, TRUCK)) == [True, True]
    assert seen((10, -0.9, CAR), (20, 0, TRUCK)) == [True, True]
    assert seen((10, 0.9, CAR), (10, -0.9, CAR), (20, 0, TRUCK)) == [True, True, False]


def test_occluder_must_be_nearer():
    # a car behind the pedestrian does not hide it, and a car overlapping the ray but farther does not either
    assert seen((15, 0, CAR), (8, 0, PED)) == [True, True]
