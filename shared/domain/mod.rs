//! The domain model: pure data, no I/O.

pub mod bulk;
pub mod customer;
pub mod directory;
pub mod ids;
pub mod job;
pub mod library;
pub mod member;
pub mod operator;
pub mod ops;
pub mod rules;
pub mod scope;
pub mod tenant;
pub mod time;
pub mod transfer;

pub use bulk::*;
pub use customer::*;
pub use directory::*;
pub use ids::*;
pub use job::*;
pub use library::*;
pub use member::*;
pub use operator::*;
pub use ops::*;
pub use rules::*;
pub use scope::*;
pub use tenant::*;
pub use time::Timestamp;
pub use transfer::*;
