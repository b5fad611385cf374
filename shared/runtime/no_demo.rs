//! `tagsync serve --demo` in a build without the `sim` feature: there are no simulators, so
//! the demo cannot start (the same API as `demo.rs`, with a `Demo` that cannot exist).

use crate::app::App;

/// No simulators in this build: no value of this type exists.
pub enum Demo {}

impl Demo {
    pub fn wecom_base(&self) -> String {
        match *self {}
    }
}

pub async fn start_simulators() -> std::io::Result<Demo> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "--demo needs the simulators: this tagsync was built without the `sim` feature",
    ))
}

pub async fn seed(
    _app: &App,
    demo: &Demo,
    _tagsync_base: &str,
    _admin_token: &str,
) -> Result<String, String> {
    match *demo {}
}
