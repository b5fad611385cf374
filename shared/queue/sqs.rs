//! SQS queue (in progress).
