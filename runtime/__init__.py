"""pystack.runtime — see DESIGN.md and docs/contracts.md."""
