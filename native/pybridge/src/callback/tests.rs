//! Callbacks made during a call, against a real interpreter without the
//! BEAM: a test [`Caller`] stands for the process waiting for the call.

use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::context::{Cancel, Code, Context, ContextConfig, Job, Outcome, Timing};

/// What the test caller tells the test of the request it is making.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// It is encoding the request (the arguments it got from Python).
    Encoding { args: usize },
    /// It handed the encoded request to the gate: whether it was sent.
    Passed { sent: bool },
}

/// Encodes a request only once the test lets it (`go`), so the test knows
/// the encoding is under way while it cancels the call.
struct SlowCaller {
    steps: mpsc::Sender<Step>,
    go: Mutex<mpsc::Receiver<()>>,
}

impl Caller for SlowCaller {
    fn request(
        &self,
        _slot: &Arc<Slot>,
        name: &str,
        args: Vec<Value>,
        _remaining: Option<std::time::Duration>,
        gate: &Gate<'_>,
    ) -> Result<(), String> {
        let items = match args.first() {
            Some(Value::List(items)) => items.len(),
            _ => 0,
        };
        let _ = self.steps.send(Step::Encoding { args: items });
        // The encoding of a big payload, held until the test says.
        let go = self.go.lock().map_err(|_| "poisoned")?.recv();
        go.map_err(|_| "the test went away")?;
        let encoded = format!("{name}{args:?}").into_bytes();
        let sent = gate.pass(|| encoded.len()).is_some();
        let _ = self.steps.send(Step::Passed { sent });
        if sent {
            Ok(())
        } else {
            Err(CANCELLED.to_string())
        }
    }

    fn pid(&self) -> Value {
        Value::None
    }

    fn notify(&self, _kind: &str, _payload: &Value, gate: &Gate<'_>) -> Result<(), String> {
        gate.pass(|| ()).ok_or_else(|| CANCELLED.to_string())
    }
}

/// The call's reply, and its caller for callbacks.
struct CallerReply {
    outcome: mpsc::Sender<Outcome>,
    caller: Mutex<Option<SlowCaller>>,
}

impl Reply for CallerReply {
    fn send(self: Box<Self>, outcome: Outcome, _timing: Timing) {
        let _ = self.outcome.send(outcome);
    }

    fn caller(&self) -> Option<Box<dyn Caller>> {
        let caller = self.caller.lock().ok()?.take()?;
        Some(Box::new(caller))
    }
}

fn eventually(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

#[test]
fn a_cancellation_does_not_wait_for_a_callback_request_being_encoded() {
    crate::runtime::initialize(&Default::default()).expect("interpreter starts");
    let ctx = Context::new(ContextConfig {
        max_workers: 2,
        ..ContextConfig::default()
    })
    .expect("context starts");
    let namespace = ctx.new_namespace();
    let (steps_tx, steps) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let (outcome_tx, outcome) = mpsc::channel();
    let reply = CallerReply {
        outcome: outcome_tx,
        caller: Mutex::new(Some(SlowCaller {
            steps: steps_tx,
            go: Mutex::new(go_rx),
        })),
    };
    let code = "import erlang\n\
                try:\n    \
                    erlang.call('big', list(range(200_000)))\n\
                except BaseException as e:\n    \
                    answer = str(e)\n";
    let state = CallState::new(None);
    let job = Job::Exec {
        code: Code::Text(code.into()),
        namespace: namespace.clone(),
    };
    ctx.submit(job, Box::new(reply), state.clone())
        .expect("submitted");

    let wait = Duration::from_secs(60);
    assert_eq!(
        steps.recv_timeout(wait),
        Ok(Step::Encoding { args: 200_000 })
    );
    // The request is being encoded: the cancellation returns meanwhile (it
    // would wait for the encoding's end, which waits for it, if the
    // encoding held the call's lock).
    let (cancelled_tx, cancelled) = mpsc::channel();
    let canceller = {
        let state = state.clone();
        std::thread::spawn(move || {
            let _ = cancelled_tx.send(state.cancel());
        })
    };
    let cancel = cancelled.recv_timeout(wait);
    // Whatever happened, the encoding may end now.
    go.send(()).expect("the caller waits");
    assert_eq!(
        cancel,
        Ok(Cancel::Cancelled { was_running: true }),
        "the cancellation waited for the request's encoding"
    );
    canceller.join().expect("canceller");
    // The request, encoded after the cancellation, is not sent...
    assert_eq!(steps.recv_timeout(wait), Ok(Step::Passed { sent: false }));
    // ...and the Python side is told at once, by the gate's refusal.
    assert!(eventually(wait, || ctx.stats().in_flight == 0));
    let answer = Job::Eval {
        code: Code::Text("answer".into()),
        locals: vec![],
        namespace,
    };
    let (tx, rx) = mpsc::channel();
    let reply = CallerReply {
        outcome: tx,
        caller: Mutex::new(None),
    };
    ctx.submit(answer, Box::new(reply), CallState::new(None))
        .expect("submitted");
    match rx.recv_timeout(wait) {
        Ok(Outcome::Value(Value::Str(text))) => assert!(
            text.contains("the call making this callback was cancelled"),
            "{text}"
        ),
        other => panic!("expected the callback's timeout, got {other:?}"),
    }
    // A cancelled call has no reply.
    assert!(outcome.try_recv().is_err());
}

/// A message the gate refuses is dropped after the refusal ran: a
/// request's term holds its slot, whose destructor would otherwise answer
/// it before the refusal answers it with the call's cancellation.
#[test]
fn a_refused_message_is_dropped_after_the_refusal() {
    use std::cell::Cell;

    struct Message<'a> {
        refused: &'a Cell<bool>,
        refused_at_drop: &'a Cell<Option<bool>>,
    }
    impl Drop for Message<'_> {
        fn drop(&mut self) {
            self.refused_at_drop.set(Some(self.refused.get()));
        }
    }

    let state = CallState::new(None);
    assert_eq!(state.cancel(), Cancel::Cancelled { was_running: false });
    let refused = Cell::new(false);
    let refused_at_drop = Cell::new(None);
    let on_refusal = || refused.set(true);
    let gate = Gate::with_refusal(&state, &on_refusal);
    let message = Message {
        refused: &refused,
        refused_at_drop: &refused_at_drop,
    };
    assert_eq!(gate.pass(move || drop(message)), None);
    assert!(gate.refused());
    assert_eq!(refused_at_drop.get(), Some(true));
}
