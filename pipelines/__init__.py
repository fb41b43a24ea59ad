"""The stages: every file, MLflow and network access; `pipelines.cli` is the `churn` command."""

import models  # noqa: F401  (first: sets OpenMP's wait policy before any library loads OpenMP)
