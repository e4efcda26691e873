//! What bootlabd hands every service: the live inventory (swapped atomically
//! on reload), the machine timeline and the metrics registry.

use std::sync::Arc;

use bootlab_inventory::Inventory;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::timeline::Timeline;

/// Shared service state. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Shared {
    inventory: watch::Receiver<Arc<Inventory>>,
    /// Each MAC's boot events.
    pub timeline: Timeline,
    /// Prometheus registry.
    pub metrics: Metrics,
}

/// The side that publishes new inventories (bootlabd's reload).
#[derive(Debug)]
pub struct InventoryPublisher {
    tx: watch::Sender<Arc<Inventory>>,
    timeline: Timeline,
}

impl InventoryPublisher {
    /// Publishes a validated inventory to every service at once.
    pub fn publish(&self, inv: Inventory) {
        self.timeline.set_inventory(&inv);
        self.tx.send_replace(Arc::new(inv));
    }
}

impl Shared {
    /// State for `inv`, and the handle that swaps in later inventories.
    pub fn new(inv: Inventory) -> (Self, InventoryPublisher) {
        let timeline = Timeline::new(&inv);
        let (tx, rx) = watch::channel(Arc::new(inv));
        (
            Self {
                inventory: rx,
                timeline: timeline.clone(),
                metrics: Metrics::new(),
            },
            InventoryPublisher { tx, timeline },
        )
    }

    /// The current inventory. Hold the `Arc` for one request, not longer.
    pub fn inventory(&self) -> Arc<Inventory> {
        self.inventory.borrow().clone()
    }

    /// A receiver that wakes on every reload (`changed().await`), for
    /// services that precompute state from the inventory.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Inventory>> {
        self.inventory.clone()
    }
}
