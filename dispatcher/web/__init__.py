"""The HTTP tier: `app.create_app(state)` over a `state.WebState` the process hands in —
`run` shares its ledger, campaign and scheduler with it; `web` serves it alone."""
