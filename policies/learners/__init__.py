"""Continual learners with one surface (`setup`, `begin_task`, `observe`, `end_task`, `predict`):
weight-based ones on a small torch MLP and gradient-free ones, each in its own file."""

from __future__ import annotations

from typing import Any

from policies.learners.agem import AGEM
from policies.learners.base import PROTOCOLS, ContinualLearner, StreamSpec
from policies.learners.ewc import OnlineEWC
from policies.learners.joint import JointTraining
from policies.learners.knn import KNearestNeighbours
from policies.learners.lwf import LwF
from policies.learners.naive import Naive
from policies.learners.ncm import NearestClassMean
from policies.learners.replay import ExperienceReplay
from policies.learners.ridge import AnalyticRidge
from policies.learners.si import SynapticIntelligence

LEARNERS: dict[str, type[ContinualLearner]] = {
    "naive": Naive,
    "ewc": OnlineEWC,
    "si": SynapticIntelligence,
    "lwf": LwF,
    "replay": ExperienceReplay,
    "agem": AGEM,
    "ncm": NearestClassMean,
    "knn": KNearestNeighbours,
    "ridge": AnalyticRidge,
    "joint": JointTraining,
}
GRADIENT_FREE = ("ncm", "knn", "ridge")


def make_learner(name: str, **params: Any) -> ContinualLearner:
    """A learner by its short name, with any hyper-parameters overridden."""
    if name not in LEARNERS:
        raise ValueError(f"unknown learner {name!r}; choose from {', '.join(LEARNERS)}")
    return LEARNERS[name](**params)


__all__ = ["AGEM", "GRADIENT_FREE", "LEARNERS", "PROTOCOLS", "AnalyticRidge", "ContinualLearner", "ExperienceReplay",
           "JointTraining", "KNearestNeighbours", "LwF", "Naive", "NearestClassMean", "OnlineEWC", "StreamSpec",
           "SynapticIntelligence", "make_learner"]
