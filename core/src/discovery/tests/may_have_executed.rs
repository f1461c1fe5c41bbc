//! "May have executed" is sticky across every attempt and hedge of a call: a
//! property test over random attempt histories, and the lost-reply-then-
//! deadline sequence of issue 9 (finding 9) pinned as a regression test.
//!
//! Each endpoint is given a fate for the whole call (answer, fail after the
//! handler ran, refuse connects, swallow the request, hang the connect); the
//! call's timeout, attempts, hedging, fail mode and backoff are random too.
//! Whatever happens, a failed call must report `may_have_executed` exactly when
//! one of its attempts did — and always when a handler actually ran.

use proptest::prelude::*;

use super::*;

const ADDRS: [&str; 3] = ["a:1", "b:1", "c:1"];

/// What one endpoint does with every attempt sent to it.
#[derive(Clone, Copy, Debug)]
enum Fate {
    /// The handler runs and answers after this many milliseconds.
    Answers(u64),
    /// The handler runs and fails with this code after this many milliseconds
    /// (a retryable code stands for a reply lost after the handler ran).
    FailsAfterRunning(Code, u64),
    /// Connects are refused: provably not executed.
    Refuses,
    /// Connects succeed, the request is written and never read.
    Swallows,
    /// Connects never complete: provably not executed.
    Hangs,
}

fn fates() -> impl Strategy<Value = Fate> {
    // Weighted towards what makes histories interesting: retryable failures
    // after the handler ran, followed by attempts that provably never ran.
    let code = prop_oneof![
        3 => Just(Code::Unavailable),
        1 => Just(Code::Internal),
        1 => Just(Code::ResourceExhausted)
    ];
    prop_oneof![
        1 => (1u64..300).prop_map(Fate::Answers),
        3 => (code, 0u64..100).prop_map(|(code, ms)| Fate::FailsAfterRunning(code, ms)),
        2 => Just(Fate::Refuses),
        1 => Just(Fate::Swallows),
        1 => Just(Fate::Hangs),
    ]
}

/// One call's circumstances.
#[derive(Clone, Debug)]
struct History {
    fates: [Fate; 3],
    timeout_ms: u64,
    max_attempts: u32,
    idempotent: bool,
    hedge_after_ms: Option<u64>,
    fail_try: bool,
    backoff_ms: u64,
    /// The client's seed: which endpoint round robin starts at, and so the
    /// order the fates are met in.
    seed: u64,
}

fn histories() -> impl Strategy<Value = History> {
    (
        [fates(), fates(), fates()],
        10u64..400,
        1u32..=5,
        any::<bool>(),
        proptest::option::of(1u64..60),
        any::<bool>(),
        1u64..50,
        any::<u64>(),
    )
        .prop_map(
            |(
                fates,
                timeout_ms,
                max_attempts,
                idempotent,
                hedge_after_ms,
                fail_try,
                backoff_ms,
                seed,
            )| History {
                fates,
                timeout_ms,
                max_attempts,
                idempotent,
                hedge_after_ms,
                fail_try,
                backoff_ms,
                seed,
            },
        )
}

/// Handler runs, per endpoint.
type Runs = Arc<Mutex<BTreeMap<String, u32>>>;

/// Starts the endpoints of `history` and counts their handler runs.
async fn start(net: &MemNet, history: &History) -> Runs {
    let runs: Runs = Arc::default();
    for (addr, fate) in ADDRS.iter().zip(history.fates) {
        match fate {
            Fate::Refuses => net.set_mode(addr, Mode::Refuse),
            Fate::Swallows => net.set_mode(addr, Mode::BlackHole),
            Fate::Hangs => net.set_mode(addr, Mode::Hang),
            Fate::Answers(_) | Fate::FailsAfterRunning(..) => {}
        }
        let me = addr.to_string();
        let counter = Arc::clone(&runs);
        let router = Router::new().route("Echo.Who", move |_ctx, (): ()| {
            let me = me.clone();
            *counter.lock().unwrap().entry(me.clone()).or_default() += 1;
            async move {
                match fate {
                    Fate::Answers(ms) => {
                        sleep(Duration::from_millis(ms)).await;
                        Ok(me)
                    }
                    Fate::FailsAfterRunning(code, ms) => {
                        sleep(Duration::from_millis(ms)).await;
                        Err(Status::new(code, format!("{me} failed after running")))
                    }
                    Fate::Refuses | Fate::Swallows | Fate::Hangs => {
                        unreachable!("no request reaches {me}")
                    }
                }
            }
        });
        let listener = net.bind(addr).await.unwrap();
        tokio::spawn(Server::new(router).serve(listener, std::future::pending()));
    }
    runs
}

/// Makes `history`'s call; returns its result, the statuses of its failed
/// attempts, and how many handler runs it caused.
async fn make_call(history: &History) -> (Result<String, Status>, Vec<Status>, u32) {
    let net = MemNet::default();
    let runs = start(&net, history).await;
    let (mut config, events) = config();
    config.retry.max_attempts = history.max_attempts;
    config.retry.backoff.initial = Duration::from_millis(history.backoff_ms);
    config.fail_mode = match history.fail_try {
        true => FailMode::FailTry,
        false => FailMode::FailOver,
    };
    config.budget = None;
    config.seed = SeedSource::new(history.seed);
    config.hedge = history.hedge_after_ms.map(|ms| HedgePolicy {
        delay: HedgeDelay::Fixed(Duration::from_millis(ms)),
        max_extra_ratio: 1.0,
        min_samples: 1,
    });
    let client = client_for(&net, &ADDRS, config);
    let mut options = CallOptions::new().timeout(Duration::from_millis(history.timeout_ms));
    if history.idempotent {
        options = options.idempotent();
    }
    let result = who(&client, options).await;
    let failed = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| match event {
            DiscoveryEvent::AttemptFinished {
                outcome: Err(status),
                ..
            } => Some(status.clone()),
            _ => None,
        })
        .collect();
    let ran = runs.lock().unwrap().values().sum();
    (result, failed, ran)
}

fn run_paused<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(future)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_failed_call_may_have_executed_exactly_when_any_attempt_may_have(
        history in histories()
    ) {
        // Proves stickiness over random histories: the final status's
        // may_have_executed is the OR over every attempt and hedge, and is set
        // whenever a handler ran — whichever attempt happened to be last.
        let (result, failed, ran) = run_paused(make_call(&history));
        if let Err(status) = result {
            let any_attempt = failed.iter().any(Status::may_have_executed);
            prop_assert_eq!(
                status.may_have_executed(),
                any_attempt,
                "final {:?}; attempts {:?}",
                status,
                failed
            );
            prop_assert!(
                ran == 0 || status.may_have_executed(),
                "{} handler run(s), yet the call says not executed: {:?}",
                ran,
                status
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_reply_lost_after_running_then_a_retry_stopped_before_sending_reports_may_have_executed()
{
    // Proves issue 9's finding 9 stays fixed: one attempt runs on a:1 and its
    // reply is lost (Unavailable after the handler ran); the last retry goes to
    // an endpoint it never reaches (here: connects refused), and the call stops
    // with its attempts spent. Only that last attempt is "not executed"; the
    // call must still say it may have executed. Before the fix it ended
    // may_have_executed=false, taken from the last attempt alone.
    let history = History {
        fates: [
            Fate::FailsAfterRunning(Code::Unavailable, 5),
            Fate::Refuses,
            Fate::Refuses,
        ],
        timeout_ms: 200,
        max_attempts: 3,
        idempotent: true,
        hedge_after_ms: None,
        fail_try: false,
        backoff_ms: 10,
        seed: 7,
    };
    let (result, failed, ran) = make_call(&history).await;
    let status = result.unwrap_err();
    assert_eq!(ran, 1);
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert!(!failed[2].may_have_executed(), "{failed:?}");
    assert!(status.may_have_executed(), "{status:?}");
    assert!(
        status.message().contains("an earlier attempt"),
        "the message says why: {status:?}"
    );
}
