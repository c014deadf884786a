#!/bin/sh
# chainops image entrypoint: installs the pipeline's age identity, then runs the command
# (the code server, or `dagster api execute_run` in a run pod launched by K8sRunLauncher;
# the Helm chart sets `args`, so this entrypoint runs in both).
#
# The identity comes from a mounted Secret at $CHAINOPS_AGE_IDENTITY_FILE. chainops wants
# it as a 0600 file it owns under $CHAINOPS_HOME/age/, which a Secret volume cannot give
# to a non-root user, so it is copied. A missing identity is fatal: a pod that generated
# its own identity would seal Secrets for a key nobody keeps.
set -eu

if [ -n "${CHAINOPS_AGE_IDENTITY_FILE:-}" ]; then
  if [ ! -r "$CHAINOPS_AGE_IDENTITY_FILE" ]; then
    echo "chainops: age identity $CHAINOPS_AGE_IDENTITY_FILE is missing; mount the Secret (see README, Running on Kubernetes)" >&2
    exit 1
  fi
  umask 077
  mkdir -p "$CHAINOPS_HOME/age"
  cp "$CHAINOPS_AGE_IDENTITY_FILE" "$CHAINOPS_HOME/age/identity.txt.tmp"
  chmod 0600 "$CHAINOPS_HOME/age/identity.txt.tmp"
  mv "$CHAINOPS_HOME/age/identity.txt.tmp" "$CHAINOPS_HOME/age/identity.txt"
fi

exec "$@"
