//! The convergence loop (in progress).
