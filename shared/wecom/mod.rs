//! WeCom (wecom-api.md): callback crypto (WXBizMsgCrypt) and the events callbacks carry;
//! the API client with its shared access token, per-API rate limiter and the one classifier
//! of errcodes.

pub mod classify;
pub mod client;
pub mod crypto;
pub mod event;
pub mod ratelimit;
pub mod token;
