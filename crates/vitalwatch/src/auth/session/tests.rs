//! Sessions. Expiry is tested on tokio's paused clock, which the
//! sessions read: the tests advance it instead of waiting.

use super::*;
use tokio::time::advance;

const IDLE: Duration = Duration::from_secs(15 * 60);
const MAX_AGE: Duration = Duration::from_secs(12 * 3600);

#[tokio::test(start_paused = true)]
async fn a_session_ends_after_its_idle_time_without_a_request() {
    let sessions = Sessions::new(IDLE, MAX_AGE);
    let (id, csrf) = sessions.create("alice", Role::Clinician);
    assert_eq!(sessions.get(&id).map(|s| s.csrf), Some(csrf));
    // Each request moves the idle deadline on.
    advance(IDLE - Duration::from_secs(1)).await;
    assert!(sessions.get(&id).is_some(), "ended before its idle time");
    advance(IDLE - Duration::from_secs(1)).await;
    assert!(sessions.peek(&id), "a request restarted the idle time");
    // Peeking (an open stream) is not activity: the session still ends.
    advance(Duration::from_secs(2)).await;
    assert!(!sessions.peek(&id));
    assert!(sessions.get(&id).is_none(), "idle for longer than allowed");
    // And it is forgotten.
    assert!(!sessions.peek(&id));
}

#[tokio::test(start_paused = true)]
async fn a_session_ends_at_its_maximum_age_however_busy() {
    let sessions = Sessions::new(IDLE, MAX_AGE);
    let (id, _) = sessions.create("bob", Role::Viewer);
    let step = IDLE / 2;
    let mut elapsed = Duration::ZERO;
    while elapsed + step <= MAX_AGE {
        advance(step).await;
        elapsed += step;
        assert!(sessions.get(&id).is_some(), "ended at {elapsed:?}");
    }
    advance(step).await;
    assert!(sessions.get(&id).is_none(), "outlived its maximum age");
}

#[test]
fn csrf_needs_the_exact_token() {
    assert!(Sessions::csrf_matches("abc", Some("abc")));
    assert!(!Sessions::csrf_matches("abc", Some("abd")));
    assert!(!Sessions::csrf_matches("abc", None));
}
