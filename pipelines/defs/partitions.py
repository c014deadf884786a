"""One partition per environment file; the sensor adds new ones."""

import dagster as dg

environments_partitions = dg.DynamicPartitionsDefinition(name="environments")
