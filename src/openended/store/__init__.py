"""The run directory: every candidate in SQLite, the resolved config, exports."""

from openended.store.run_store import (
    BatchMetrics,
    CandidateRecord,
    RunStore,
    Status,
    StoreError,
)

__all__ = ["BatchMetrics", "CandidateRecord", "RunStore", "Status", "StoreError"]
