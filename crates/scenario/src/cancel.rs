//! Stopping a run midway: a flag the run looks at between its phases, and the
//! clusters it is using, so that whoever stops it can destroy them — which
//! also ends a step that is still running on them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What a stopped run reports as its error.
pub const STOPPED: &str = "stopped on request before it finished";

#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    stopped: AtomicBool,
    clusters: Mutex<Vec<String>>,
}

impl Cancel {
    pub fn new() -> Self {
        Cancel::default()
    }

    /// Asks the run to stop; returns the clusters it is using.
    pub fn cancel(&self) -> Vec<String> {
        self.0.stopped.store(true, Ordering::SeqCst);
        self.clusters()
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.stopped.load(Ordering::SeqCst)
    }

    /// The clusters the run is using right now.
    pub fn clusters(&self) -> Vec<String> {
        self.0
            .clusters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn track(&self, cluster: &str) {
        self.0
            .clusters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(cluster.to_owned());
    }

    pub(crate) fn untrack(&self, cluster: &str) {
        self.0
            .clusters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|c| c != cluster);
    }
}
