//! WeCom: callback crypto (WXBizMsgCrypt) and the events callbacks carry.

pub mod crypto;
pub mod event;
