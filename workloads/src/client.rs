//! The `Client` trait: how an op reaches a system under test.
//!
//! The harness's HTTP client for faultline's own nodes implements it; an adapter for
//! another system (etcd is planned) implements the same trait and reuses the generator,
//! nemesis and checker unchanged.

use std::future::Future;
use std::time::Duration;

use crate::op::{Completion, Op};

pub trait Client: Send + Sync + 'static {
    /// Performs `op` against node `node` (an index into the cluster) and classifies the
    /// result. Must return within about `deadline`; a timeout or an error after the
    /// request may have been sent is `Completion::Info`, an error that proves the op had
    /// no effect is `Completion::Fail`.
    fn invoke(
        &self,
        node: usize,
        op: &Op,
        deadline: Duration,
    ) -> impl Future<Output = Completion> + Send;
}
