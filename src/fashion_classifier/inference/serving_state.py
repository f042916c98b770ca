"""What one serving process answers with: the model holder, the prediction log, the classifier.

The Flask app (``web.state``) and the gRPC server process (``oip_grpc``) open it the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fashion_classifier.config import Settings
from fashion_classifier.inference.classifier import Classifier
from fashion_classifier.inference.loader import LoadedModel
from fashion_classifier.inference.reloader import ModelHolder
from fashion_classifier.predlog.arms_report import RecentReport
from fashion_classifier.predlog.base import PredictionLog

log = logging.getLogger(__name__)


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

    @property
    def versions(self) -> list[str]:
        """The versions this process serves: the current one, then a rollout's candidate."""
        serving = self.holder.serving
        return serving.versions if serving is not None else []


def open_state(settings: Settings, predlog: PredictionLog | None = None) -> ServingState:
    """Load the current model, start its reload thread and the prediction log (``open_log`` when
    ``predlog`` is None): what one serving process answers with."""
    from fashion_classifier import metrics

    metrics.record_build(settings.build_commit)
    if predlog is None:
        from fashion_classifier.predlog import open_log

        predlog = open_log(settings)
    holder = ModelHolder(settings.model_dir, settings.reload_interval)
    holder.check()  # load now, so the process is ready as soon as it serves
    if holder.model is None:
        log.warning(
            "no model loaded from %s yet (%s); not ready until one is published",
            settings.model_dir,
            holder.last_error or "no CURRENT version",
        )
    holder.start()
    predlog.start()
    classifier = Classifier(holder, predlog, settings.client_salt)
    return ServingState(settings, holder, predlog, classifier, RecentReport(predlog) if classifier.logging else None)
