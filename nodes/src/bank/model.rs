//! The bank's data on the wire: the checker's snapshot model
//! (`checker::snapshot::model`), used as is, so a snapshot this node returns is the
//! checker's input with no second definition to drift.

pub use checker::snapshot::model::{
    Algorithm, Channel, Checkpoint, Snapshot, Transfer, VectorClock,
};

/// Wall-clock milliseconds since the epoch, without any `/admin/clock` offset.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
