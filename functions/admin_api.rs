//! Lambda entry point: the admin api routes of the HTTP API (see template.yaml).

use tagsync::api::Surface;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    tagsync::runtime::logging::init(tagsync::runtime::logging::json_requested());
    // Built once per sandbox and shared by every invocation.
    let app = tagsync::app::App::aws_from_env().await?;
    let app = &app;
    lambda_http::run(lambda_http::service_fn(move |req| {
        tagsync::runtime::lambda::http(app, Surface::Admin, req)
    }))
    .await
}
