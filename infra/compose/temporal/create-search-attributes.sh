#!/bin/sh
# One-shot (the temporal-admin-tools service): registers the custom search attributes
# Prospector's workflows upsert and the Temporal UI filters on. Safe to run again:
# attributes that already exist are left alone. The worker registers the same set at
# start; doing it here first means the first workflows never race the registration.
# TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE come from the service's environment.
set -eu

namespace="${TEMPORAL_NAMESPACE:-default}"
attributes="ProspectStage ProspectDomain ApprovalState ProspectOwner"

# auto-setup creates the namespace a moment after the server reports healthy.
tries=0
until temporal operator namespace describe "$namespace" >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -ge 120 ]; then
    echo "namespace $namespace did not appear within 120 s at $TEMPORAL_ADDRESS" >&2
    exit 1
  fi
  sleep 1
done

existing="$(temporal operator search-attribute list --namespace "$namespace")"
for name in $attributes; do
  if printf '%s\n' "$existing" | grep -qw "$name"; then
    echo "search attribute $name already registered"
  else
    temporal operator search-attribute create --namespace "$namespace" --name "$name" --type Keyword
    echo "search attribute $name registered (Keyword)"
  fi
done
