//! Executor tests against a real interpreter, without the BEAM.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::*;
use crate::convert::Value;

/// Delivers outcomes to a channel, as the NIF delivers them to a process.
struct ChannelReply(mpsc::Sender<Outcome>);

impl Reply for ChannelReply {
    fn send(self: Box<Self>, outcome: Outcome, _timing: Timing) {
        let _ = self.0.send(outcome);
    }
}

/// Delivers outcomes with their timing.
struct TimedReply(mpsc::Sender<(Outcome, Timing)>);

impl Reply for TimedReply {
    fn send(self: Box<Self>, outcome: Outcome, timing: Timing) {
        let _ = self.0.send((outcome, timing));
    }
}

fn start() {
    crate::runtime::initialize(&Default::default()).expect("interpreter starts");
}

fn context(max_workers: usize) -> Context {
    start();
    Context::new(ContextConfig {
        max_workers,
        ..ContextConfig::default()
    })
    .expect("context starts")
}

fn submit(
    ctx: &Context,
    job: Job,
    timeout: Option<Duration>,
) -> (mpsc::Receiver<Outcome>, Arc<CallState>) {
    let (tx, rx) = mpsc::channel();
    let state = CallState::new(timeout.map(|t| Instant::now() + t));
    ctx.submit(job, Box::new(ChannelReply(tx)), state.clone())
        .expect("submitted");
    (rx, state)
}

fn run(ctx: &Context, job: Job) -> Outcome {
    let (rx, _) = submit(ctx, job, None);
    rx.recv_timeout(Duration::from_secs(10)).expect("an answer")
}

/// A gate that Python calls block on inside one C call (`os.read` on a
/// socket, GIL released), which no interrupt can end: tests use it to know
/// that calls are running at the same time, instead of timing them.
struct Latch {
    /// Each call writes a byte to `arrived` before it blocks on `gate`.
    arrived: (UnixStream, UnixStream),
    gate: (UnixStream, UnixStream),
}

impl Latch {
    fn new() -> Latch {
        Latch {
            arrived: UnixStream::pair().expect("socket pair"),
            gate: UnixStream::pair().expect("socket pair"),
        }
    }

    /// Python code (an expression) that blocks until released.
    fn code(&self) -> String {
        format!(
            "(__import__('os').write({}, b'.'), __import__('os').read({}, 1))[1]",
            self.arrived.1.as_raw_fd(),
            self.gate.1.as_raw_fd()
        )
    }

    /// True once `n` calls are blocked at the latch (within `timeout`).
    fn arrivals(&self, n: usize, timeout: Duration) -> bool {
        let mut stream = &self.arrived.0;
        let mut buf = vec![0u8; n];
        let _ = stream.set_read_timeout(Some(timeout));
        stream.read_exact(&mut buf).is_ok()
    }

    /// Lets `n` blocked (or later) calls go.
    fn release(&self, n: usize) {
        let mut stream = &self.gate.0;
        stream.write_all(&vec![b'!'; n]).expect("release");
    }
}

/// Polls `done` until it holds or `timeout` passes; whether it held.
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

fn exec(namespace: &Arc<Namespace>, code: &str) -> Job {
    Job::Exec {
        code: Code::Text(code.into()),
        namespace: namespace.clone(),
    }
}

fn eval(namespace: &Arc<Namespace>, code: &str, locals: Vec<(Value, Value)>) -> Job {
    Job::Eval {
        code: Code::Text(code.into()),
        locals,
        namespace: namespace.clone(),
    }
}

fn int(outcome: Outcome) -> i64 {
    match outcome {
        Outcome::Value(Value::Int(i)) => i,
        other => panic!("expected an int, got {other:?}"),
    }
}

fn error_kind(outcome: Outcome) -> ErrorKind {
    match outcome {
        Outcome::Error(info) => info.kind,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn exec_then_eval_share_the_process_namespace() {
    let ctx = context(4);
    let namespace = ctx.new_namespace();
    assert!(matches!(
        run(&ctx, exec(&namespace, "x = 41")),
        Outcome::Done
    ));
    assert_eq!(int(run(&ctx, eval(&namespace, "x + 1", vec![]))), 42);
}

#[test]
fn namespaces_are_isolated() {
    let ctx = context(4);
    let (a, b) = (ctx.new_namespace(), ctx.new_namespace());
    run(&ctx, exec(&a, "y = 'a'"));
    assert_eq!(
        error_kind(run(&ctx, eval(&b, "y", vec![]))),
        ErrorKind::Python("NameError".into())
    );
}

#[test]
fn locals_are_visible_to_one_evaluation_only_and_to_comprehensions() {
    let ctx = context(4);
    let namespace = ctx.new_namespace();
    run(&ctx, exec(&namespace, "results = []"));
    for i in 1..=3 {
        let locals = vec![(Value::Str("item".into()), Value::Int(i))];
        run(&ctx, eval(&namespace, "results.append(item * 2)", locals));
    }
    let locals = vec![(Value::Str("k".into()), Value::Int(10))];
    assert_eq!(
        int(run(
            &ctx,
            eval(&namespace, "sum([r * k for r in results])", locals)
        )),
        120
    );
    assert_eq!(
        error_kind(run(&ctx, eval(&namespace, "item", vec![]))),
        ErrorKind::Python("NameError".into())
    );
}

#[test]
fn the_same_source_is_compiled_once() {
    let ctx = context(4);
    let namespace = ctx.new_namespace();
    let before = ctx.stats().compiles_total;
    for _ in 0..5 {
        run(&ctx, eval(&namespace, "1 + 2 + 3 + 4", vec![]));
    }
    assert_eq!(ctx.stats().compiles_total - before, 1);
}

#[test]
fn code_cache_is_bounded() {
    start();
    let ctx = Context::new(ContextConfig {
        code_cache_size: 8,
        ..ContextConfig::default()
    })
    .expect("context");
    let namespace = ctx.new_namespace();
    for i in 0..50 {
        run(&ctx, eval(&namespace, &format!("{i} + 0"), vec![]));
    }
    assert!(ctx.state().code_cache.lock().len() <= 8);
}

#[test]
fn python_errors_carry_type_message_and_traceback() {
    let ctx = context(4);
    let namespace = ctx.new_namespace();
    match run(&ctx, exec(&namespace, "raise ValueError('boom')")) {
        Outcome::Error(info) => {
            assert_eq!(info.kind, ErrorKind::Python("ValueError".into()));
            assert_eq!(info.message, "boom");
            assert!(info
                .traceback
                .unwrap_or_default()
                .contains("ValueError: boom"));
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn calls_module_functions_and_main() {
    let ctx = context(4);
    let namespace = ctx.new_namespace();
    let job = Job::Call {
        module: "os.path".into(),
        function: "join".into(),
        args: vec![Value::Str("a".into()), Value::Str("b".into())],
        kwargs: vec![],
        namespace: None,
    };
    assert!(matches!(run(&ctx, job), Outcome::Value(Value::Str(s)) if s == "a/b"));
    run(&ctx, exec(&namespace, "def double(x, by=2): return x * by"));
    let job = Job::Call {
        module: "__main__".into(),
        function: "double".into(),
        args: vec![Value::Int(21)],
        kwargs: vec![(Value::Str("by".into()), Value::Int(3))],
        namespace: Some(namespace.clone()),
    };
    assert_eq!(int(run(&ctx, job)), 63);
}

#[test]
fn a_cancelled_running_call_is_interrupted_and_the_worker_freed() {
    // One worker: the next call is answered only if the loop stopped.
    let ctx = context(1);
    let namespace = ctx.new_namespace();
    let (rx, state) = submit(&ctx, exec(&namespace, "while True: pass"), None);
    // Other tests share the GIL: wait until the loop actually runs.
    assert!(eventually(Duration::from_secs(10), || state.is_running()));
    assert_eq!(cancel(&state), Cancel::Cancelled { was_running: true });
    // No reply for a cancelled call...
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
    // ...and the context answers again.
    assert_eq!(int(run(&ctx, eval(&namespace, "1", vec![]))), 1);
    assert!(eventually(Duration::from_secs(10), || ctx
        .stats()
        .in_flight
        == 0));
}

#[test]
fn calls_past_their_deadline_are_interrupted_without_the_caller() {
    let ctx = context(4);
    let namespace = ctx.new_namespace();
    let (rx, state) = submit(
        &ctx,
        exec(&namespace, "while True: pass"),
        Some(Duration::from_millis(20)),
    );
    assert!(eventually(Duration::from_secs(10), || state.is_cancelled()));
    assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
}

#[test]
fn a_message_of_the_call_is_sent_before_its_cancellation_returns_or_never() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let state = CallState::new(None);
    assert!(state.start());
    let sent = Arc::new(AtomicBool::new(false));
    let (entered_tx, entered) = mpsc::channel();
    let (returned_tx, returned) = mpsc::channel::<()>();
    let sender = {
        let (state, sent) = (state.clone(), sent.clone());
        std::thread::spawn(move || {
            state.unless_cancelled(|| {
                entered_tx.send(()).expect("test waits");
                // The canceller has marked the call cancelled while this
                // thread holds the lock: it is inside `cancel`, which takes
                // the lock next. So the canceller contends for it.
                assert!(
                    eventually(Duration::from_secs(60), || state.is_cancelled()),
                    "the canceller never started"
                );
                // It cannot return while the send is under way (a broken
                // `cancel` that skipped the lock would be seen returning
                // here; a correct one makes this wait run out).
                let returned_during_send = returned.recv_timeout(Duration::from_millis(50)).is_ok();
                sent.store(true, Ordering::SeqCst);
                returned_during_send
            })
        })
    };
    entered.recv().expect("sender entered");
    let canceller = {
        let (state, sent) = (state.clone(), sent.clone());
        std::thread::spawn(move || {
            let cancel = state.cancel();
            // Whenever the cancellation returns, the send under way is done.
            let sent_before = sent.load(Ordering::SeqCst);
            let _ = returned_tx.send(());
            (cancel, sent_before)
        })
    };
    assert_eq!(
        sender.join().expect("sender"),
        Some(false),
        "the cancellation returned while a message of the call was being sent"
    );
    let (cancel, sent_before) = canceller.join().expect("canceller");
    assert_eq!(cancel, Cancel::Cancelled { was_running: true });
    assert!(sent_before);
    // Once cancelled, nothing more is sent.
    assert_eq!(state.unless_cancelled(|| ()), None);
}

/// Submits `n` calls to `ctx` (each from its own namespace, as `n` BEAM
/// processes would) that block until released; true when all `n` were
/// blocked at once, which they can only be if they overlap. Every call is
/// released and answered before it returns.
fn blocked_at_once(ctx: &Context, n: usize) -> bool {
    let latch = Latch::new();
    let pending: Vec<_> = (0..n)
        .map(|_| submit(ctx, eval(&ctx.new_namespace(), &latch.code(), vec![]), None).0)
        .collect();
    let overlapped = latch.arrivals(n, Duration::from_secs(60));
    latch.release(n);
    for rx in pending {
        rx.recv_timeout(Duration::from_secs(60)).expect("answer");
    }
    overlapped
}

/// [`blocked_at_once`] for 40 calls in a new context.
fn forty_overlap() -> bool {
    blocked_at_once(&context(64), 40)
}

#[test]
fn gil_releasing_calls_overlap() {
    assert!(forty_overlap());
}

#[test]
fn blocked_calls_overlap_while_another_context_computes() {
    // The GIL is busy with the other context's computation, so only where
    // the home worker sleeps in the kernel shows that its call is blocked.
    let busy = context(1);
    let busy_namespace = busy.new_namespace();
    let (_, computing) = submit(&busy, exec(&busy_namespace, "while True: pass"), None);
    assert!(eventually(Duration::from_secs(10), || computing.is_running()));
    let overlapped = forty_overlap();
    cancel(&computing);
    busy.close();
    assert!(overlapped);
}

#[test]
fn closing_answers_queued_calls_and_refuses_new_ones() {
    let ctx = context(1);
    let namespace = ctx.new_namespace();
    let latch = Latch::new();
    let (busy, _) = submit(&ctx, eval(&namespace, &latch.code(), vec![]), None);
    // The busy call runs before closing.
    assert!(latch.arrivals(1, Duration::from_secs(30)));
    let (queued, _) = submit(&ctx, eval(&namespace, "1", vec![]), None);
    ctx.close();
    latch.release(1);
    assert!(matches!(
        busy.recv_timeout(Duration::from_secs(5)),
        Ok(Outcome::Value(_))
    ));
    assert_eq!(
        error_kind(queued.recv_timeout(Duration::from_secs(5)).expect("answer")),
        ErrorKind::Closed
    );
    let (tx, _rx) = mpsc::channel();
    let refused = ctx.submit(
        eval(&namespace, "1", vec![]),
        Box::new(ChannelReply(tx)),
        CallState::new(None),
    );
    assert_eq!(refused.unwrap_err(), SubmitError::Closed);
}

#[test]
fn released_namespaces_are_counted() {
    let ctx = context(2);
    let namespace = ctx.new_namespace();
    run(&ctx, exec(&namespace, "data = bytearray(1000)"));
    assert_eq!(ctx.stats().namespaces, 1);
    drop(namespace);
    assert_eq!(ctx.stats().namespaces, 0);
}

#[test]
fn calls_run_on_the_home_thread_when_it_is_not_stuck() {
    let ctx = context(8);
    let namespace = ctx.new_namespace();
    run(&ctx, exec(&namespace, "import threading"));
    let first = int(run(&ctx, eval(&namespace, "threading.get_ident()", vec![])));
    for _ in 0..20 {
        assert_eq!(
            int(run(&ctx, eval(&namespace, "threading.get_ident()", vec![]))),
            first
        );
    }
}

#[test]
fn a_stuck_home_thread_does_not_hold_up_quick_calls() {
    let ctx = context(8);
    let latch = Latch::new();
    let (slow, _) = submit(
        &ctx,
        eval(&ctx.new_namespace(), &latch.code(), vec![]),
        None,
    );
    assert!(latch.arrivals(1, Duration::from_secs(30)));
    // The slow call cannot end before it is released, after the quick one.
    let (quick, _) = submit(&ctx, eval(&ctx.new_namespace(), "7", vec![]), None);
    assert_eq!(
        int(quick.recv_timeout(Duration::from_secs(30)).expect("quick")),
        7
    );
    latch.release(1);
    slow.recv_timeout(Duration::from_secs(30))
        .expect("the slow call finishes");
}

#[test]
fn quick_calls_get_through_while_long_computations_hold_the_context() {
    let ctx = context(8);
    // Two computations that never end unless interrupted: the quick call
    // can only be answered while they run.
    let spins: Vec<_> = (0..2)
        .map(|_| submit(&ctx, exec(&ctx.new_namespace(), "while True: pass"), None).1)
        .collect();
    let (quick, _) = submit(&ctx, eval(&ctx.new_namespace(), "7", vec![]), None);
    assert_eq!(
        int(quick.recv_timeout(Duration::from_secs(60)).expect("quick")),
        7
    );
    for state in &spins {
        cancel(state);
    }
    assert!(eventually(Duration::from_secs(10), || ctx
        .stats()
        .in_flight
        == 0));
}

#[test]
fn closing_stops_every_worker_overflow_included() {
    let ctx = context(16);
    // Six calls blocked at once: six workers.
    assert!(blocked_at_once(&ctx, 6));
    assert!(ctx.stats().workers >= 6, "overflow workers were started");
    ctx.close();
    assert!(eventually(Duration::from_secs(10), || ctx.stats().workers == 0));
}

#[test]
fn a_panic_in_a_call_is_an_error_and_the_worker_lives_on() {
    let ctx = context(1);
    let namespace = ctx.new_namespace();
    let job = Job::Call {
        module: "__pybridge_test_panic__".into(),
        function: "f".into(),
        args: vec![],
        kwargs: vec![],
        namespace: None,
    };
    match run(&ctx, job) {
        Outcome::Error(info) => {
            assert_eq!(info.kind, ErrorKind::Internal);
            assert!(info.message.contains("a test panic"), "{}", info.message);
        }
        other => panic!("expected an internal error, got {other:?}"),
    }
    assert_eq!(int(run(&ctx, eval(&namespace, "6 * 7", vec![]))), 42);
    assert_eq!(ctx.stats().workers, 1);
}

#[test]
fn replacing_compile_cannot_crash_the_interpreter() {
    let ctx = context(2);
    let namespace = ctx.new_namespace();
    // Patching builtins does not reach pybridge, which kept the real one.
    // Tests run in parallel on one interpreter: the patches here only bite
    // on this context's home thread.
    run(
        &ctx,
        exec(
            &namespace,
            "import builtins, threading\nme = threading.get_ident()\n_real = builtins.compile\n\
             builtins.compile = lambda *a, **k: 42 if threading.get_ident() == me else _real(*a, **k)",
        ),
    );
    assert_eq!(int(run(&ctx, eval(&namespace, "40 + 2", vec![]))), 42);
    run(&ctx, exec(&namespace, "builtins.compile = _real"));
    // Replacing pybridge's own helpers (as if the bridge still called a
    // Python compile hook, one returning a closure's code, which would
    // crash the evaluator) changes nothing either.
    run(
        &ctx,
        exec(
            &namespace,
            "import pybridge\n\
             def hook(*a):\n    x = 1\n    return (lambda: x).__code__\n\
             pybridge.compile_source = hook\n\
             pybridge.format_exception = lambda *a: 'fake'",
        ),
    );
    assert_eq!(
        int(run(&ctx, eval(&namespace, "1 + 2 + 3 + 4 + 5", vec![]))),
        15
    );
    match run(&ctx, eval(&namespace, "1 / 0", vec![])) {
        Outcome::Error(info) => {
            let traceback = info.traceback.unwrap_or_default();
            assert!(traceback.contains("ZeroDivisionError"), "{traceback}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn only_module_level_code_reaches_the_evaluator() {
    use pyo3::prelude::*;
    Python::initialize();
    Python::attach(|py| {
        let globals = pyo3::types::PyDict::new(py);
        py.run(
            c"def outer():\n    x = 1\n    return lambda: x\n\
              def f(a): return a\n\
              closure = outer().__code__\n\
              body = f.__code__\n\
              module = compile('1', 'm', 'eval')\n\
              code_type = type(module)",
            Some(&globals),
            None,
        )
        .expect("setup");
        let get = |name: &str| globals.get_item(name).expect("get").expect(name);
        let code_type = get("code_type");
        assert!(super::execute::check_code(&get("module"), &code_type).is_ok());
        for name in ["closure", "body", "code_type"] {
            let err = super::execute::check_code(&get(name), &code_type).expect_err(name);
            assert!(
                err.is_instance_of::<pyo3::exceptions::PyTypeError>(py),
                "{name}"
            );
            let message = err.value(py).to_string();
            assert!(
                message.starts_with("pybridge can only evaluate"),
                "{message}"
            );
        }
    });
}

#[test]
fn names_rebound_during_an_eval_keep_their_new_value() {
    let ctx = context(2);
    let namespace = ctx.new_namespace();
    run(
        &ctx,
        exec(&namespace, "def setx():\n    global x\n    x = 5"),
    );
    let locals = vec![(Value::Str("x".into()), Value::Int(1))];
    run(&ctx, eval(&namespace, "setx()", locals));
    assert_eq!(int(run(&ctx, eval(&namespace, "x", vec![]))), 5);
    // An untouched local is still undone.
    let locals = vec![(Value::Str("y".into()), Value::Int(1))];
    assert_eq!(int(run(&ctx, eval(&namespace, "y + 1", locals))), 2);
    assert_eq!(
        error_kind(run(&ctx, eval(&namespace, "y", vec![]))),
        ErrorKind::Python("NameError".into())
    );
}

#[test]
fn calls_racing_close_are_answered_or_refused_never_lost() {
    for _ in 0..20 {
        let ctx = context(2);
        let namespace = ctx.new_namespace();
        let submitters: Vec<_> = (0..4)
            .map(|_| {
                let ctx = ctx.clone();
                let namespace = namespace.clone();
                std::thread::spawn(move || {
                    let mut answers = Vec::new();
                    for _ in 0..50 {
                        let (tx, rx) = mpsc::channel();
                        let job = eval(&namespace, "1", vec![]);
                        match ctx.submit(job, Box::new(ChannelReply(tx)), CallState::new(None)) {
                            Ok(()) => answers.push(rx),
                            Err(SubmitError::Closed) => {}
                            Err(other) => panic!("unexpected {other:?}"),
                        }
                    }
                    answers
                })
            })
            .collect();
        std::thread::sleep(Duration::from_micros(200));
        ctx.close();
        for submitter in submitters {
            for rx in submitter.join().expect("submitter") {
                // Every queued call gets an answer: a value or Closed.
                rx.recv_timeout(Duration::from_secs(5)).expect("an answer");
            }
        }
    }
}

#[test]
fn deadlines_are_enforced_in_closed_contexts_too() {
    let ctx = context(2);
    let namespace = ctx.new_namespace();
    let (rx, state) = submit(
        &ctx,
        exec(&namespace, "while True: pass"),
        Some(Duration::from_millis(20)),
    );
    assert!(eventually(Duration::from_secs(10), || state.is_running()));
    ctx.close();
    // No caller cancels it: the monitor interrupts it past its deadline.
    assert!(eventually(Duration::from_secs(5), || state.is_cancelled()
        && state.running_on() == 0));
    assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
    assert!(eventually(Duration::from_secs(3), || ctx.stats().workers == 0));
}

#[test]
fn replies_carry_queue_and_run_time() {
    let ctx = context(1);
    let namespace = ctx.new_namespace();
    let submit_timed = |job: Job| {
        let (tx, rx) = mpsc::channel();
        ctx.submit(job, Box::new(TimedReply(tx)), CallState::new(None))
            .expect("submitted");
        rx
    };
    let before = Instant::now();
    let slow = submit_timed(exec(&namespace, "import time; time.sleep(0.2)"));
    let quick = submit_timed(eval(&namespace, "1", vec![]));
    let submitting = before.elapsed().as_micros() as u64;
    let answer = |rx: mpsc::Receiver<(Outcome, Timing)>| {
        rx.recv_timeout(Duration::from_secs(10)).expect("an answer")
    };
    let (outcome, slow_timing) = answer(slow);
    assert!(matches!(outcome, Outcome::Done), "{outcome:?}");
    assert!(slow_timing.run_us >= 200_000, "{slow_timing:?}");
    // The one worker ran the quick call only after the slow one ended, at
    // least 200 ms after the slow call was queued.
    let (outcome, quick_timing) = answer(quick);
    assert_eq!(int(outcome), 1);
    assert!(
        quick_timing.queue_us + submitting >= 200_000,
        "{quick_timing:?} (submitting took {submitting} µs)"
    );
}
