//! WeCom (wecom-api.md): callback crypto (WXBizMsgCrypt) and the events callbacks carry;
//! the API client with its shared access token, its rate budget per (corp, API) counted in
//! the store, and the one classifier of errcodes.

pub mod budget;
pub mod classify;
pub mod client;
pub mod crypto;
pub mod event;
mod port;
pub mod strategy;
pub mod token;
