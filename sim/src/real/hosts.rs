//! The hosts of a real run: each runs its program (the same one a simulated
//! host runs) on a thread of its own with its own current-thread tokio runtime,
//! so a crash is what turmoil's is — the runtime is dropped with every task
//! the host spawned, and its sockets close.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::clock::{self, RealClock};
use crate::host::client::ClientProgram;
use crate::host::registry::{self, RegistryState};
use crate::host::server::ServerProgram;
use crate::recorder::Recorder;

/// What a host runs; started again on a restart.
#[derive(Clone)]
pub(crate) enum Program {
    /// squall's registry service.
    Registry(Arc<RegistryState>, Recorder),
    /// A server group's router.
    Server(ServerProgram),
    /// A client group's workload.
    Client(ClientProgram),
}

impl Program {
    fn start(&self) -> Pin<Box<dyn Future<Output = turmoil::Result>>> {
        match self {
            Program::Registry(state, recorder) => {
                registry::software(Arc::clone(state), recorder.clone())()
            }
            Program::Server(program) => program.clone().software()(),
            Program::Client(program) => program.clone().software()(),
        }
    }
}

/// A running host: its thread and the signal that stops it.
#[derive(Debug)]
pub(crate) struct HostThread {
    /// Stops the host (a crash, or the end of the run).
    stop: Option<oneshot::Sender<()>>,
    /// Joined on stop, so the host's sockets are closed when `stop` returns.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HostThread {
    /// Starts `program` as host `name` on a new thread on `clock`.
    // A real run is not a simulated one: each host gets its own thread and
    // runtime so that a crash drops exactly that host's tasks and sockets.
    #[allow(clippy::disallowed_methods)]
    pub(crate) fn start(
        name: &str,
        program: Program,
        clock: Arc<RealClock>,
    ) -> io::Result<HostThread> {
        let (stop, stopped) = oneshot::channel();
        let host = name.to_owned();
        let thread = std::thread::Builder::new()
            .name(format!("real-{name}"))
            .spawn(move || run(&host, program, clock, stopped))?;
        Ok(HostThread {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the host and waits until its runtime (tasks, sockets) is gone.
    pub(crate) fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::warn!("a real-mode host thread panicked");
            }
        }
    }
}

impl Drop for HostThread {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// The body of a host thread: run the program until stopped, then drop the
/// runtime (every task the host spawned, every socket it opened).
fn run(host: &str, program: Program, clock: Arc<RealClock>, mut stopped: oneshot::Receiver<()>) {
    let _clock = clock::enter(clock);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, host, "cannot start a runtime for a real host");
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let mut software = program.start();
        tokio::select! {
            biased;
            _ = &mut stopped => {}
            result = &mut software => {
                if let Err(error) = result {
                    tracing::warn!(%error, host, "real host's program failed");
                }
                let _ = (&mut stopped).await;
            }
        }
        // From here on, what is dropped is torn down by the harness, not
        // given up by its caller (see `net::AbandonedConnect`).
        clock::begin_teardown();
    });
    drop(local);
    drop(runtime);
}
