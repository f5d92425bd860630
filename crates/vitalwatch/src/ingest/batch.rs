//! One broker worker's publishes, committed together: the readings of every publish the
//! worker handles in one turn of its event loop go to the pipeline as one write, so a turn
//! costs one store command, one commit hand-off and one alert evaluation however many
//! connections it served (each publish still waits for its own answer before its PUBACK).
//!
//! A worker is one thread, so this is `Rc` and `RefCell`: nothing here crosses threads.

use crate::pipeline::{Pipeline, ReadingOutcome};
use crate::store::Source;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;
use vitalwatch_core::telemetry::Reading;

/// What became of one gathered reading; `None` when its write failed (the PUBACK says so).
type Answer = Option<ReadingOutcome>;

/// The readings gathered in the current turn, each with where to send its answer.
#[derive(Default)]
struct Waiting {
    readings: Vec<(Reading, Instant)>,
    answers: Vec<oneshot::Sender<Answer>>,
}

/// One worker's gatherer (shared by its connections).
pub struct Gatherer {
    pipeline: Arc<Pipeline>,
    waiting: RefCell<Waiting>,
}

impl Gatherer {
    pub fn new(pipeline: Arc<Pipeline>) -> Rc<Gatherer> {
        Rc::new(Gatherer {
            pipeline,
            waiting: RefCell::default(),
        })
    }

    /// Adds a decoded reading to this turn's write and waits for its answer. The first
    /// reading of a turn starts the write, which yields once to the event loop first so that
    /// the other publishes of the turn join it.
    pub async fn ingest(self: &Rc<Self>, reading: Reading, arrived: Instant) -> Answer {
        let (answer, answered) = oneshot::channel();
        let first = {
            let mut waiting = self.waiting.borrow_mut();
            waiting.readings.push((reading, arrived));
            waiting.answers.push(answer);
            waiting.readings.len() == 1
        };
        if first {
            ntex_rt::spawn(Rc::clone(self).write());
        }
        answered.await.ok().flatten()
    }

    async fn write(self: Rc<Self>) {
        tokio::task::yield_now().await;
        let Waiting { readings, answers } = self.waiting.take();
        match self.pipeline.ingest_arrivals(readings, Source::Mqtt).await {
            Ok(outcomes) => {
                for (answer, outcome) in answers.into_iter().zip(outcomes) {
                    // A publisher that went away no longer waits; its reading is committed.
                    let _ = answer.send(Some(outcome));
                }
            }
            // The store logged why; each publish is answered with a failure.
            Err(_) => {
                for answer in answers {
                    let _ = answer.send(None);
                }
            }
        }
    }
}
