//! Child processes the tests start: killed and reaped when their guard drops, so a failing
//! test leaves nothing running; their output read line by line as it is printed.

use super::wait::poll_until;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A running child process, killed (SIGKILL) and reaped on drop.
pub struct Guarded {
    child: Option<Child>,
}

impl Guarded {
    /// Spawns `command`; panics when it cannot be started.
    pub fn spawn(command: &mut Command) -> Guarded {
        let program = command.get_program().to_string_lossy().into_owned();
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("starting {program}: {err}"));
        Guarded { child: Some(child) }
    }

    fn child(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("the child is only taken by kill and wait, which end its use")
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Its standard output (when piped), to read or hand to [`Lines`].
    pub fn take_stdout(&mut self) -> ChildStdout {
        self.child()
            .stdout
            .take()
            .expect("the child's standard output is piped and taken once")
    }

    /// Its standard input (when piped): dropping it closes the pipe.
    pub fn take_stdin(&mut self) -> ChildStdin {
        self.child()
            .stdin
            .take()
            .expect("the child's standard input is piped and taken once")
    }

    /// Its standard output, read line by line.
    pub fn lines(&mut self) -> Lines {
        Lines::new(self.take_stdout())
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Waits (at most `timeout`) for it to exit; `None` while it still runs. An exited child
    /// is reaped and the guard has nothing left to kill.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let status = poll_until(timeout, || child.try_wait().ok().flatten())?;
        self.child = None;
        Some(status)
    }

    /// Sends `signal` (`TERM`, `HUP`, …) by process id.
    pub fn signal(&self, signal: &str) {
        super::signal(self.id(), signal);
    }

    /// Sends `signal` and waits (at most `timeout`) for the exit; kills it if it is still
    /// running then. `None` when it had to be killed.
    pub fn stop(&mut self, signal: &str, timeout: Duration) -> Option<ExitStatus> {
        self.child.as_ref()?;
        self.signal(signal);
        let status = self.wait_timeout(timeout);
        if status.is_none() {
            self.kill();
        }
        status
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Lines of a reader (a child's output), read on a thread of their own as they are printed.
pub struct Lines {
    /// In a mutex only so that a server holding its lines can be shared between threads.
    rx: Mutex<Receiver<String>>,
    seen: Vec<String>,
}

impl Lines {
    pub fn new(reader: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx: Mutex::new(rx),
            seen: Vec::new(),
        }
    }

    /// Reads lines until `pick` gives a value for one; `None` when `timeout` passes or the
    /// output ends first. Every line read is kept in [`Lines::seen`].
    pub fn find<T>(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let rx = self.rx.get_mut().unwrap_or_else(PoisonError::into_inner);
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let picked = pick(&line);
                    self.seen.push(line);
                    if picked.is_some() {
                        return picked;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// The next line containing `needle` (at most `timeout`).
    pub fn find_containing(&mut self, timeout: Duration, needle: &str) -> Option<String> {
        self.find(timeout, |line| {
            line.contains(needle).then(|| line.to_owned())
        })
    }

    /// Every line read so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }
}
