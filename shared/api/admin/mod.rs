//! The operator's API, one file per resource.

pub mod customers;
pub mod rules;
