"""What makes an experiment open as model training in the MLflow UI, and the addresses mlviz prints.

Two things decide where `mlflow ui` lands when an experiment is opened (read in MLflow 3.17's bundle,
`useNavigateToExperimentPageTab` and `WorkflowTypeContext`):

- the UI's workflow switch ("GenAI" | "Model training" in the sidebar): the `workflowType` query
  parameter of the address, else the browser's remembered choice (localStorage `mlflow.workflowType`),
  else GenAI. With workflow-based navigation on (it is, in 3.17), this alone picks the landing tab:
  GenAI → Overview/Traces, machine learning → Runs. A store cannot change it; an address can.
- the experiment tag `mlflow.experimentKind` (`custom_model_development` for model training), which
  the UIs before workflow-based navigation use for the same choice and for the experiment-type prompt
  (MLflow's own demo sets it for its GenAI experiment).

So mlviz sets the tag (never over a value already there) and every address it gives carries
`workflowType=machine_learning`.
"""

from __future__ import annotations

from urllib.parse import quote, urlparse

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
ML_WORKFLOW = "workflowType=machine_learning"


def mark_model_training(client, experiment_id: str) -> bool:
    """Tag the experiment as model training unless it already has a kind (the user's, MLflow's or an
    earlier mlviz's: never overridden). `client`: an `mlflow.MlflowClient`. Returns whether it tagged."""
    experiment = client.get_experiment(str(experiment_id))
    if EXPERIMENT_KIND_TAG in (experiment.tags or {}):
        return False
    client.set_experiment_tag(str(experiment_id), EXPERIMENT_KIND_TAG, MODEL_TRAINING)
    return True


def ui_base(tracking_uri: str | None) -> str | None:
    """The MLflow UI's address for a tracking server URI (http/https), else None (a local store has no
    UI until someone runs `mlflow ui`, on a port mlviz cannot know)."""
    if not tracking_uri or urlparse(str(tracking_uri)).scheme not in ("http", "https"):
        return None
    return str(tracking_uri).rstrip("/")


def experiment_route(experiment_id: str) -> str:
    """The UI route (after '#') of an experiment's runs, opened as model training."""
    return f"/experiments/{quote(str(experiment_id), safe='')}/runs?{ML_WORKFLOW}"


def run_route(run_id: str, experiment_id: str | None = None, artifact: str | None = None) -> str:
    """The UI route (after '#') of a run, or of one of its artifacts in the artifact viewer
    (`/experiments/<exp>/runs/<run>/artifacts/<path>`); without the experiment id, `/runs/<run>`
    (the UI finds the experiment, but cannot then open an artifact)."""
    run = quote(str(run_id), safe="")
    if experiment_id is None:
        return f"/runs/{run}?{ML_WORKFLOW}"
    route = f"/experiments/{quote(str(experiment_id), safe='')}/runs/{run}"
    if artifact:
        route += "/artifacts/" + quote(artifact.strip("/"), safe="/")
    return f"{route}?{ML_WORKFLOW}"


def experiment_url(base: str, experiment_id: str) -> str:
    """`<base>/#/experiments/<id>/runs?workflowType=machine_learning`: opens on the runs table."""
    return f"{base.rstrip('/')}/#{experiment_route(experiment_id)}"


def run_url(base: str, run_id: str, experiment_id: str | None = None, artifact: str | None = None) -> str:
    """`<base>/#/experiments/<exp>/runs/<run>[/artifacts/<path>]?workflowType=machine_learning`."""
    return f"{base.rstrip('/')}/#{run_route(run_id, experiment_id, artifact)}"
