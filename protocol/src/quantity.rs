//! Human quantities in manifests and configs: sizes (`64Mi`), CPU (`500m`), durations (`10s`).
