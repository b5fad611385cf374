//! The operator's API, one file per resource.

pub mod channels;
pub mod customers;
pub mod rules;
pub mod transfers;
