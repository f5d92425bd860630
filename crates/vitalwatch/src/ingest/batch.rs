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
use tokio::sync::Notify;
use vitalwatch_core::telemetry::Reading;

/// What became of one gathered reading; `None` when its write failed (the PUBACK says so).
type Answer = Option<ReadingOutcome>;

/// One turn's write, shared by the publishes that joined it (one allocation per turn, where a
/// channel per publish would make one per reading).
#[derive(Default)]
struct Turn {
    /// `None` while the write runs; then the answers in the order the readings joined. Shorter
    /// than the turn (empty) when the write failed or never finished.
    answers: RefCell<Option<Vec<Answer>>>,
    /// Woken once, when `answers` is set.
    done: Notify,
}

/// The readings gathered in the current turn, and the turn they will be answered through.
#[derive(Default)]
struct Waiting {
    readings: Vec<(Reading, Instant)>,
    turn: Rc<Turn>,
}

/// Answers a turn exactly once: with the write's outcomes, or, when the write is dropped
/// before it answers (the worker stopping), with failures, so that no publish waits forever.
struct Answering(Rc<Turn>);

impl Answering {
    fn answer(self, answers: Vec<Answer>) {
        *self.0.answers.borrow_mut() = Some(answers);
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.answers.borrow_mut().get_or_insert_with(Vec::new);
        self.0.done.notify_waiters();
    }
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
        let (turn, index) = {
            let mut waiting = self.waiting.borrow_mut();
            waiting.readings.push((reading, arrived));
            (Rc::clone(&waiting.turn), waiting.readings.len() - 1)
        };
        if index == 0 {
            ntex_rt::spawn(Rc::clone(self).write());
        }
        // Registered before the first await: the write cannot have answered yet, and a
        // `Notified` sees every `notify_waiters` from its creation on.
        let done = turn.done.notified();
        if turn.answers.borrow().is_none() {
            done.await;
        }
        let mut answers = turn.answers.borrow_mut();
        answers.as_mut()?.get_mut(index)?.take()
    }

    async fn write(self: Rc<Self>) {
        tokio::task::yield_now().await;
        let Waiting { readings, turn } = self.waiting.take();
        let answering = Answering(turn);
        match self.pipeline.ingest_arrivals(readings, Source::Mqtt).await {
            // A publisher that went away no longer waits; its reading is committed.
            Ok(outcomes) => answering.answer(outcomes.into_iter().map(Some).collect()),
            // The store logged why; each publish is answered with a failure.
            Err(_) => answering.answer(Vec::new()),
        }
    }
}
