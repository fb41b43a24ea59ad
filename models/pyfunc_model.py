"""MLflow models-from-code entry: serves a saved churn-risk, customer-value or contact-uplift bundle.

MLflow runs this file when the model is loaded; the model itself is LightGBM's text
format plus JSON (see `models/boosting.py`), so loading never unpickles anything.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

from models.boosting import ValueModel, load_churn_model


class BundleModel(PythonModel):
    """Predicts `churn_probability`, `predicted_value` or `uplift`, depending on the bundle's kind."""

    def load_context(self, context) -> None:  # type: ignore[no-untyped-def]
        folder = Path(context.artifacts["bundle"])
        self.kind = (folder / "kind.txt").read_text().strip()
        if self.kind == "contact-uplift":
            from models.uplift.learners import UpliftModel

            self.model = UpliftModel.load(folder)
        else:
            self.model = load_churn_model(folder) if self.kind == "churn-risk" else ValueModel.load(folder)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:  # type: ignore[no-untyped-def]
        column = {"churn-risk": "churn_probability", "contact-uplift": "uplift"}.get(self.kind, "predicted_value")
        return pd.DataFrame({column: self.model.predict(model_input)}, index=model_input.index)


mlflow.models.set_model(BundleModel())
