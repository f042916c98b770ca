"""What one app instance serves with, kept in ``app.extensions`` (no module-level state)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from fashion_classifier.config import Settings
from fashion_classifier.inference.loader import LoadedModel
from fashion_classifier.inference.reloader import ModelHolder
from fashion_classifier.predlog.arms_report import RecentReport
from fashion_classifier.predlog.base import PredictionLog
from fashion_classifier.web.classify import Classifier

EXTENSION = "fashion_classifier"


@dataclass
class ServingState:
    settings: Settings
    holder: ModelHolder
    predlog: PredictionLog
    classifier: Classifier
    arms_report: RecentReport | None = None  # None with the prediction log off

    def close(self) -> None:
        """Stop the reload thread and flush the prediction log (tests, shutdown)."""
        self.holder.stop()
        self.classifier.close()
        self.predlog.flush(timeout=5.0)
        self.predlog.close()

    @property
    def model(self) -> LoadedModel | None:
        return self.holder.model


def serving_state() -> ServingState:
    return current_app.extensions[EXTENSION]
