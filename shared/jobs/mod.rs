//! Jobs: what the worker runs for each queued job kind. (The sync jobs are being moved here
//! from `handlers::engine`; automatic tagging starts here.)
//!
//! | module | job |
//! |---|---|
//! | [`rules`] | evaluate automatic-tagging rules on an event, record firings, apply changes |
//! | [`undo`] | an undo run of a rule, page by page |

pub mod rules;
pub mod undo;
