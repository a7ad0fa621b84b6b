//! What the BEAM holds on to: the resource types behind contexts, process
//! namespaces, calls in flight and `%Py.Object{}`s, and the NIF that makes a
//! namespace.

use std::sync::Arc;

use rustler::{Encoder, Env, ResourceArc, Term};

use crate::context::{CallState, Context, Namespace};
use crate::convert::PyObject;

/// A context (`%Py.Context{ref: _}`).
pub struct ContextResource(pub Context);
/// The namespace of one BEAM process in one context, kept in that process'
/// dictionary.
pub struct NamespaceResource(pub Arc<Namespace>);
/// A call in flight, for the caller to cancel.
/// A running call: its state (for `cancel`) and where its reply goes (for
/// `redirect`).
pub struct CallResource(pub Arc<CallState>, pub Arc<super::reply::ReplyTo>);

impl Drop for CallResource {
    /// A coroutine awaited on the event loop is cancelled when the last
    /// handle on its call goes (its caller died, or dropped its
    /// `%Py.Task{}`): nobody can receive its result any more. Other calls
    /// run on to their deadline, as before.
    fn drop(&mut self) {
        if self.0.is_awaited() {
            self.0.cancel();
        }
    }
}
/// A Python object held by a `%Py.Object{}` term.
pub struct ObjectResource(pub PyObject);

#[rustler::resource_impl]
impl rustler::Resource for ContextResource {}
#[rustler::resource_impl]
impl rustler::Resource for NamespaceResource {}
#[rustler::resource_impl]
impl rustler::Resource for CallResource {}
#[rustler::resource_impl]
impl rustler::Resource for ObjectResource {}

#[rustler::nif]
fn namespace_new(env: Env<'_>, ctx: ResourceArc<ContextResource>) -> Term<'_> {
    ResourceArc::new(NamespaceResource(ctx.0.new_namespace())).encode(env)
}
