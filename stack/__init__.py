"""pystack.stack — see DESIGN.md and docs/contracts.md."""
