//! Jobs (issue 13 is moving the engine here).

pub mod bulk_tags;
pub mod customer_index;
