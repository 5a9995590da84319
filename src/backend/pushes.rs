//! The queue a subscribed client's messages wait in: filled by backends'
//! subscribers, drained by the client's connection, its bytes counted as
//! client memory and held to the client's pubsub output limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{Notify, mpsc};

use crate::wire::limit::OutputLimit;
use crate::wire::reply::Reply;

/// Where a client's messages and subscription confirmations go, tagged
/// with the subscriber they came from. The queue counts the bytes waiting
/// in it (as client memory, and against the client's pubsub output limit):
/// a subscriber that does not read is closed rather than held forever.
#[derive(Clone)]
pub struct Pushes {
    tx: mpsc::UnboundedSender<(usize, Reply)>,
    queue: Arc<Queue>,
}

/// The bytes queued for one subscribed client, and whether they broke its
/// output limit.
pub struct Queue {
    /// Shared with the client's entry, for eviction by size.
    bytes: Arc<AtomicUsize>,
    limit: OutputLimit,
    /// When the queue went over the soft limit, while it stays over.
    over_soft: Mutex<Option<Instant>>,
    broken: Mutex<Option<String>>,
    notify: Notify,
}

impl Queue {
    /// Completes with the reason once the queue broke its limit.
    pub async fn overflowed(&self) -> String {
        loop {
            let notified = self.notify.notified();
            if let Some(why) = self.lock_broken().clone() {
                return why;
            }
            notified.await;
        }
    }

    fn lock_broken(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.broken.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn added(&self, n: usize) {
        crate::wire::alloc::clients_add(n as isize);
        let queued = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        if self.limit.is_off() {
            return;
        }
        let since = {
            let mut over = self.over_soft.lock().unwrap_or_else(|e| e.into_inner());
            if self.limit.soft > 0 && queued as u64 >= self.limit.soft {
                *over.get_or_insert_with(Instant::now)
            } else {
                *over = None;
                Instant::now()
            }
        };
        if let Some(why) = self.limit.exceeded(queued, Some(since.elapsed())) {
            let mut broken = self.lock_broken();
            if broken.is_none() {
                *broken = Some(format!("{why} (messages queued)"));
                self.notify.notify_waiters();
            }
        }
    }

    fn taken(&self, n: usize) {
        crate::wire::alloc::clients_add(-(n as isize));
        self.bytes.fetch_sub(n, Ordering::Relaxed);
    }
}

/// The receiving end of [`Pushes`], held by the client's connection.
pub struct PushReceiver {
    rx: mpsc::UnboundedReceiver<(usize, Reply)>,
    queue: Arc<Queue>,
}

impl PushReceiver {
    pub async fn recv(&mut self) -> Option<(usize, Reply)> {
        let item = self.rx.recv().await?;
        self.queue.taken(item.1.size());
        Some(item)
    }

    pub fn queue(&self) -> Arc<Queue> {
        self.queue.clone()
    }
}

impl Drop for PushReceiver {
    fn drop(&mut self) {
        // What is still queued is freed with the channel.
        self.rx.close();
        while let Ok(item) = self.rx.try_recv() {
            self.queue.taken(item.1.size());
        }
    }
}

impl Pushes {
    /// A queue for one client: `bytes` is the client's count of queued
    /// bytes, `limit` its pubsub output limit.
    pub fn channel(bytes: Arc<AtomicUsize>, limit: OutputLimit) -> (Pushes, PushReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = Arc::new(Queue {
            bytes,
            limit,
            over_soft: Mutex::new(None),
            broken: Mutex::new(None),
            notify: Notify::new(),
        });
        (
            Pushes {
                tx,
                queue: queue.clone(),
            },
            PushReceiver { rx, queue },
        )
    }

    /// Queues a message; false when the client is gone.
    pub fn send(&self, item: (usize, Reply)) -> bool {
        let n = item.1.size();
        if self.tx.send(item).is_err() {
            return false;
        }
        self.queue.added(n);
        true
    }
}
