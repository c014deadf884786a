"""Publish domain: the environment's commit (or review branch and pull request) and the nightly reconcile."""

import dagster as dg

from pipelines.defs.publish.assets import gitops_commit
from pipelines.defs.publish.schedules import nightly_reconcile

defs = dg.Definitions(assets=[gitops_commit], schedules=[nightly_reconcile])
