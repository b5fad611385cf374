//! The operator API, one file per resource (the others are being moved here from
//! `handlers::admin`).

pub mod rules;
