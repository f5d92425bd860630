//! Scores a stream of alert transitions against labelled ground-truth events.
