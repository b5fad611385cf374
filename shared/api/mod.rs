//! Routes (the rest of them are being moved here from `handlers`): the chat-message feed, and
//! the admin API's automation resources under [`admin`].

pub mod admin;
pub mod messages;
