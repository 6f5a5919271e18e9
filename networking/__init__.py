"""pystack.networking — see DESIGN.md and docs/contracts.md."""
