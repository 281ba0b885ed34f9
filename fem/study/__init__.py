"""Scripted studies: specs in Python or TOML, runs on local processes or Dask, an SQLite store.

    from fem.study import Study
    study = Study("results/canonical", "examples/canonical_study.toml")
    study.run()                     # resumable: finished runs are skipped
    df = study.results()            # pandas DataFrame, one row per run and level
"""

from .execute import RESULT_COLUMNS, Study, results_frame
from .spec import PARAMETERS, RECIPES, SpecError, StudySpec, run_id
from .store import SCHEMA_VERSION, Store, StoreError

__all__ = ["PARAMETERS", "RECIPES", "RESULT_COLUMNS", "SCHEMA_VERSION", "SpecError", "Store",
           "StoreError", "Study", "StudySpec", "results_frame", "run_id"]
