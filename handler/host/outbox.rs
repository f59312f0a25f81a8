//! Queue messages a handler wants sent. Under the Functions host they become output bindings
//! (the host writes them durably after a 2xx answer); under `handler serve` the outbox layer
//! writes them to the local durable queue before the response leaves, so a 202 means "queued".

use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Default)]
pub struct Outbox {
    inner: Arc<Mutex<Vec<(String, String)>>>,
}

impl Outbox {
    pub fn push(&self, queue: &str, body: String) {
        if let Ok(mut v) = self.inner.lock() {
            v.push((queue.to_string(), body));
        }
    }

    pub fn take(&self) -> Vec<(String, String)> {
        self.inner.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }
}
