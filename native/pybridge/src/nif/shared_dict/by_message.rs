//! How a queued operation (`later.rs`'s put, `get_later.rs`'s get)
//! answers its caller: by message, `{tag, answer}`, from whichever thread
//! the outcome comes on, the caller waiting in a `receive`.

use rustler::{Encoder, Env, OwnedEnv, Term};

use crate::nif::mailer;

/// A callback that sends the calling process of `env` `{tag, answer}`,
/// `answer` built by `encode` from the outcome in an env of its own (which
/// holds a copy of `tag` meanwhile). A caller that died meanwhile gets
/// nothing.
pub(super) fn answer_by_message<T: 'static>(
    env: Env<'_>,
    tag: Term<'_>,
    encode: impl for<'e> FnOnce(Env<'e>, T) -> Term<'e> + Send + 'static,
) -> Box<dyn FnOnce(T) + Send> {
    let owned = OwnedEnv::new();
    let saved = owned.save(tag);
    let pid = env.pid();
    Box::new(move |out| {
        let message = owned.run(|env| {
            let answer = encode(env, out);
            owned.save((saved.load(env), answer).encode(env))
        });
        let _ = mailer::send_saved(owned, message, &pid);
    })
}
