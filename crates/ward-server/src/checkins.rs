//! Group commit for check-ins: one writer thread takes every check-in waiting, records them
//! in one transaction (one sync to disk), and answers each. A check-in is answered only after
//! its write is durable, so nothing acknowledged is lost on a crash, and thousands of agents
//! cost one fsync per batch instead of one each.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use ward_store::{AgentRecord, Checkin, Store, StoreError};

/// The most check-ins in one transaction.
const MAX_BATCH: usize = 1024;

type Reply = oneshot::Sender<Result<Option<AgentRecord>, StoreError>>;

pub struct CheckinWriter {
    jobs: mpsc::Sender<(Checkin, Reply)>,
}

impl CheckinWriter {
    /// Starts the writer thread; it ends when the writer is dropped.
    pub fn start(
        store: Arc<dyn Store>,
        telemetry: Arc<crate::telemetry::Telemetry>,
    ) -> CheckinWriter {
        let (jobs, mut queue) = mpsc::channel::<(Checkin, Reply)>(8 * MAX_BATCH);
        std::thread::Builder::new()
            .name("ward-checkins".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(MAX_BATCH);
                while let Some(first) = queue.blocking_recv() {
                    batch.push(first);
                    while batch.len() < MAX_BATCH {
                        match queue.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    let checkins: Vec<Checkin> = batch.iter().map(|(c, _)| c.clone()).collect();
                    let started = std::time::Instant::now();
                    let recorded = store.record_checkins(&checkins);
                    telemetry
                        .metrics
                        .ops
                        .committed(checkins.len(), started.elapsed());
                    match recorded {
                        Ok(records) => {
                            for ((_, reply), record) in batch.drain(..).zip(records) {
                                let _ = reply.send(Ok(record));
                            }
                        }
                        Err(error) => {
                            // Every waiting check-in gets the error with its kind intact: a
                            // busy database is a 503 with Retry-After, never a 500.
                            for (_, reply) in batch.drain(..) {
                                let _ = reply.send(Err(error.clone()));
                            }
                        }
                    }
                }
            })
            .expect("spawn the check-in writer");
        CheckinWriter { jobs }
    }

    /// Records `checkin` with whatever else is waiting; the agent's record once durable.
    pub async fn record(&self, checkin: Checkin) -> Result<Option<AgentRecord>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send((checkin, reply))
            .await
            .map_err(|_| StoreError::Database("the check-in writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Database("the check-in writer stopped".into()))?
    }
}
