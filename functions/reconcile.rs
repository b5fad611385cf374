//! Lambda entry point: the nightly EventBridge schedule.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tagsync::runtime::logging::init(tagsync::runtime::logging::json_requested());
    let app = tagsync::app::App::aws_from_env().await?;
    let app = &app;
    lambda_runtime::run(lambda_runtime::service_fn(move |event| {
        tagsync::runtime::lambda::schedule(app, event)
    }))
    .await
}
