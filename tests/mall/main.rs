//! The mall leg against the mall simulator: the client's calls and its one classifier, the
//! simulator's contract rules and faults, its webhooks, and the traffic's conformance to
//! `docs/mall-openapi.yaml`. One binary; each test starts its own simulator on its own port.

mod batch;
mod calls;
mod conformance;
mod control;
mod errors;
mod helpers;
mod paging;
mod webhooks;
