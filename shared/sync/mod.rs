//! The sync engine: pure (no I/O). Given what the hub knows, the per-side bases and what each
//! side shows now, it merges and plans the changes per side. See docs/sync-engine.md.

pub mod collision;
pub mod group_tags;
pub mod library;
pub mod members;
pub mod object;
pub mod pace;
pub mod reconcile;
pub mod rules;
