"""Environments domain: the environment files, their partitions and the sensor that watches them."""

import dagster as dg

from pipelines.defs.environments.assets import environment_config
from pipelines.defs.environments.checks import config_valid
from pipelines.defs.environments.sensors import environment_files_sensor

defs = dg.Definitions(assets=[environment_config], asset_checks=[config_valid], sensors=[environment_files_sensor])
