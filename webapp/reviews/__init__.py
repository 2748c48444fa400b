"""Reviews: approvals of gated jobs (four-eyes), download gating and the append-only audit log."""
