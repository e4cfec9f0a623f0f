"""`mlviz explore`: a local Dash app over a 2-D embedding, with each sample's image, metadata and rationale.

`data` reads and validates the inputs (pure numpy/pandas, and the one safe resolver for image paths);
`app` builds the Dash app and serves it. Nothing here imports mlflow: the command downloads a run's files.
"""
