//! The gRPC services of the control plane's API listener (stub; being written).
