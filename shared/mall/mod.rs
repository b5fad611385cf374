//! The mall side of tagsync, as `design/mall-connector.md` defines it: the contract's
//! objects, the signed webhooks the mall sends (verification and strict parsing, no I/O) and
//! the REST client tagsync calls it with.

pub mod client;
mod port;
pub mod webhook;
