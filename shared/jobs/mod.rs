//! Jobs (issue 13 is moving the engine here).
//!
//! | module | job |
//! |---|---|
//! | [`customer_index`] | the hub's customer index |
//! | [`rules`] | evaluate automatic-tagging rules on an event, record firings, apply changes |
//! | [`transfers`] | a customer transfer: send, follow WeCom's results, carry the tags |
//! | [`undo`] | an undo run of a rule, page by page |

pub mod bulk_tags;
pub mod customer_index;
pub mod rules;
pub mod transfers;
pub mod undo;
