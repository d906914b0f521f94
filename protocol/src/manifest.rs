//! Workload manifests (YAML) and their conversion into wire types.
