//! DynamoDB backend (in progress).
