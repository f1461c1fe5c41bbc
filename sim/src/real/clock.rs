//! The clock of a real-TCP run: wall time since the run started, read through
//! the time scale, so the trace records *scenario* time (wall ÷ scale) and a
//! real trace lines up with a simulated one.
//!
//! Every thread of a real run (the harness thread and each host's thread)
//! enters the run's [`RealClock`]; [`crate::recorder::now`] and the harness's
//! sleeps read it. Outside a real run nothing is entered and every function
//! here is the identity, so a simulated run never sees a wall clock.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Wall time since the start of a real run, and how it maps to scenario time.
#[derive(Clone, Debug)]
pub struct RealClock {
    /// When the run started (scenario time zero).
    started: Instant,
    /// Wall seconds per scenario second: 0.1 runs ten times faster than the
    /// scenario's clock, 1 in real time.
    scale: f64,
}

impl RealClock {
    /// A clock starting now, `scale` wall seconds per scenario second.
    // A real run is timed by the wall clock by definition: it runs over real
    // sockets with real timers. Only the real-mode code path reaches this.
    #[allow(clippy::disallowed_methods)]
    pub fn start(scale: f64) -> Arc<RealClock> {
        Arc::new(RealClock {
            started: Instant::now(),
            scale,
        })
    }

    /// Scenario time now, in whole microseconds (finer is scheduling noise).
    pub fn now(&self) -> Duration {
        let now = self.started.elapsed().div_f64(self.scale);
        Duration::from_micros(u64::try_from(now.as_micros()).unwrap_or(u64::MAX))
    }

    /// The wall-clock length of `scenario` scenario time.
    pub fn to_wall(&self, scenario: Duration) -> Duration {
        scenario.mul_f64(self.scale)
    }

    /// The tokio instant at which scenario time `at` falls.
    pub fn instant_of(&self, at: Duration) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.started + self.to_wall(at))
    }
}

thread_local! {
    /// The real run this thread belongs to, if any.
    static CLOCK: RefCell<Option<Arc<RealClock>>> = const { RefCell::new(None) };
    /// Set while a host's runtime is being torn down (crash or end of run):
    /// what is dropped then was not given up by the caller.
    static TEARING_DOWN: RefCell<bool> = const { RefCell::new(false) };
}

/// Leaves the clock when dropped (so a thread that ran a real run and then a
/// simulated one does not read the wall clock in the simulation).
#[derive(Debug)]
pub(crate) struct Entered(());

impl Drop for Entered {
    fn drop(&mut self) {
        CLOCK.with(|c| c.borrow_mut().take());
        TEARING_DOWN.with(|t| *t.borrow_mut() = false);
    }
}

/// Makes `clock` this thread's clock until the guard drops.
pub(crate) fn enter(clock: Arc<RealClock>) -> Entered {
    CLOCK.with(|c| *c.borrow_mut() = Some(clock));
    Entered(())
}

/// Marks this host thread as being torn down (see [`tearing_down`]).
pub(crate) fn begin_teardown() {
    TEARING_DOWN.with(|t| *t.borrow_mut() = true);
}

/// Whether this thread's host is being torn down by the harness.
pub(crate) fn tearing_down() -> bool {
    TEARING_DOWN.with(|t| *t.borrow())
}

/// Whether this thread is part of a real run.
pub fn is_real() -> bool {
    CLOCK.with(|c| c.borrow().is_some())
}

/// Scenario time now in a real run; `None` outside one.
pub(crate) fn now() -> Option<Duration> {
    CLOCK.with(|c| c.borrow().as_ref().map(|clock| clock.now()))
}

/// The wall-clock length of `scenario` scenario time: itself in a simulated
/// run (exactly: no float round trip), scaled in a real one.
pub fn to_wall(scenario: Duration) -> Duration {
    CLOCK.with(|c| match c.borrow().as_ref() {
        Some(clock) => clock.to_wall(scenario),
        None => scenario,
    })
}

/// Wall seconds per scenario second: 1 outside a real run.
pub fn scale() -> f64 {
    CLOCK.with(|c| c.borrow().as_ref().map_or(1.0, |clock| clock.scale))
}

/// [`to_wall`] of an optional duration.
pub fn to_wall_opt(scenario: Option<Duration>) -> Option<Duration> {
    scenario.map(to_wall)
}
