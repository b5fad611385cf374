//! Jobs (issue 13 is moving the engine here).
//!
//! | module | job |
//! |---|---|
//! | [`customer_index`] | the hub's customer index |
//! | [`rules`] | evaluate automatic-tagging rules on an event, record firings, apply changes |
//! | [`undo`] | an undo run of a rule, page by page |

pub mod bulk_tags;
pub mod customer_index;
pub mod mall_writes;
pub mod member_batch;
pub mod rules;
pub mod undo;
