//! Store adapters: one typed store (`table`) over the single-table item layout (`item`),
//! with two backends — SQLite for `tagsync serve`, DynamoDB for the Lambdas — and tenant
//! secrets sealed at rest (`sealing`).

pub mod customers;
pub mod dynamo;
pub mod item;
pub mod sealing;
pub mod sqlite;
pub mod table;

pub use table::TableStore;
