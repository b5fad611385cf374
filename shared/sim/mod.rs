//! Simulators of the platforms tagsync talks to: real HTTP servers on loopback that behave as
//! `../shared` documents them, for tests and the demo.

pub mod feed;
pub mod hold;
pub mod mall;
pub mod process;
pub mod wecom;
pub mod world;
