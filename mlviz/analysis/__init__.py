"""Pure analyses: pandas in, plain data out (dataclasses / DataFrames that serialise to JSON).

Nothing here imports matplotlib or mlflow, so every number behind a figure can be tested alone.
"""


class NotApplicable(Exception):
    """This analysis does not apply to the data; the message says why (recorded as a skip)."""
