//! The mall side of tagsync, as `design/mall-connector.md` defines it: the contract's
//! objects and the signed webhooks the mall sends (verification and strict parsing, no I/O).

pub mod client;
pub mod webhook;
