//! The inbound surface's new rooms (issue 13 is moving the handlers here): the chat-message
//! feed ([`messages`]) and the operator's API resources in [`admin`].

pub mod admin;
pub(crate) use crate::handlers::json;
pub mod messages;
