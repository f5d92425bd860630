//! The bound on live streams (`/api/events`): in all, and per caller (a token, a dashboard
//! session or a loopback address), so one viewer cannot open thousands of streams.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct LiveStreams {
    total: Arc<Semaphore>,
    per_caller: Mutex<HashMap<String, usize>>,
    max_per_caller: usize,
}

/// One open stream; released when dropped (the stream ended).
pub struct StreamSlot {
    owner: Arc<LiveStreams>,
    caller: String,
    _total: OwnedSemaphorePermit,
}

impl LiveStreams {
    pub fn new(max_total: usize, max_per_caller: usize) -> Arc<LiveStreams> {
        Arc::new(LiveStreams {
            total: Arc::new(Semaphore::new(max_total.max(1))),
            per_caller: Mutex::new(HashMap::new()),
            max_per_caller: max_per_caller.max(1),
        })
    }

    /// A slot for one more stream of `caller`, or `None` when it (or the server) has its
    /// bound open.
    pub fn try_open(self: &Arc<Self>, caller: &str) -> Option<StreamSlot> {
        let mut per_caller = self.per_caller.lock();
        let open = per_caller.get(caller).copied().unwrap_or(0);
        if open >= self.max_per_caller {
            return None;
        }
        let total = Arc::clone(&self.total).try_acquire_owned().ok()?;
        per_caller.insert(caller.to_owned(), open + 1);
        Some(StreamSlot {
            owner: Arc::clone(self),
            caller: caller.to_owned(),
            _total: total,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut per_caller = self.owner.per_caller.lock();
        if let Some(open) = per_caller.get_mut(&self.caller) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                per_caller.remove(&self.caller);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_bounded_per_caller_and_in_all() {
        let streams = LiveStreams::new(3, 2);
        let a1 = streams.try_open("token:a").unwrap();
        let _a2 = streams.try_open("token:a").unwrap();
        assert!(streams.try_open("token:a").is_none(), "a's own bound");
        let _b1 = streams.try_open("token:b").unwrap();
        assert!(streams.try_open("token:c").is_none(), "the server's bound");
        drop(a1);
        assert!(streams.try_open("token:a").is_some(), "a's stream ended");
    }
}
