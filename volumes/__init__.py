"""pystack.volumes — see DESIGN.md and docs/contracts.md."""
