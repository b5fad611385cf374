//! Jobs (issue 13 is moving the engine here).

pub mod customer_index;
