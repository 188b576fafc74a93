//! One transfer client — a Jepsen process, like `crate::worker::Worker`: it always talks
//! to the same node (the sender, `slot mod nodes`), records each transfer's invocation
//! and completion, and after an `info` continues under a new process id.

use std::sync::Arc;

use tokio::sync::watch;
use workloads::bank::{TransferGenerator, TransferOp};

use super::client::TransferOutcome;
use crate::client::HttpClient;
use crate::history::{Event, EventType, Process};
use crate::worker::{pause, Shared};

pub struct BankWorker {
    process: u64,
    generator: TransferGenerator,
    shared: Arc<Shared<HttpClient>>,
}

impl BankWorker {
    pub fn new(slot: usize, seed: u64, shared: Arc<Shared<HttpClient>>) -> Result<Self, String> {
        let nodes = shared.node_ids.len();
        Ok(Self {
            process: slot as u64,
            generator: TransferGenerator::new(seed, slot, slot % nodes, nodes)?,
            shared,
        })
    }

    async fn invoke(&mut self, op: TransferOp) {
        let shared = &*self.shared;
        let from = self.generator.from();
        let (from_id, to_id) = (&shared.node_ids[from], &shared.node_ids[op.to]);
        let invoke = Event {
            kind: EventType::Invoke,
            process: Process::Client(self.process),
            f: "transfer",
            key: None,
            value: serde_json::json!({"from": from_id, "to": to_id, "amount": op.amount}),
            time: 0,
            node: Some(from_id.clone()),
            error: None,
        };
        shared.recorder.record(invoke.clone());
        let outcome = shared
            .client
            .transfer(from, to_id, op.amount, shared.op_timeout)
            .await;
        let completion = outcome.completion();
        let mut done = Event::complete(&invoke, &completion, 0);
        if let TransferOutcome::Ok { seq: Some(seq), .. } = outcome {
            // The channel seq ties this op to the message snapshots record in flight.
            done.value["seq"] = seq.into();
        }
        shared.recorder.record(done);
        shared.settle(&mut self.process, &completion);
    }

    /// Transfers until `stop` turns true.
    pub async fn run(&mut self, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            let op = self.generator.next_op();
            self.invoke(op).await;
            pause(self.generator.stagger(self.shared.mean_gap), &mut stop).await;
        }
    }
}
