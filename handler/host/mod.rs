//! The Azure Functions custom-handler contract: invocation payloads in, `Outputs`/`Logs`/
//! `ReturnValue` out, and the registry of the nine functions with their bindings.

pub mod functions;
pub mod invocation;
pub mod outbox;
pub mod router;
pub mod timer_runs;

pub use functions::{FunctionKind, FunctionSpec, FUNCTIONS};
pub use invocation::{HttpRequestData, InvocationRequest, QueueMessage, TimerInfo};
pub use outbox::Outbox;
