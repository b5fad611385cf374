//! The contract suite: each case is written once against a port (`Store`, `Queue`, and the
//! store's raw item layer `ItemBackend`) and run against every backend of that port, so
//! SQLite (`tagsync serve`) and AWS (the Lambdas) are held to the same behaviour. Test names
//! read `<port>_<backend>::<behaviour>`, e.g.
//! `store_dynamo::stale_version_write_is_rejected_and_fresh_write_bumps_version`.
//!
//! The AWS backends run against DynamoDB Local and moto, started by `infra/local-aws.sh`
//! (`infra/test.sh` does it all); without them those tests fail, they never skip.

mod backends;
mod customer_cases;
mod items_cases;
mod queue_cases;
mod sealing;
mod size_cases;
mod store_cases;

/// One test per case for one backend: builds a fresh backend with `$fixture`, then runs
/// `$cases::<case>` on the port it yields (`.$port`).
macro_rules! for_backend {
    ($module:ident, $fixture:path, $port:ident, $cases:ident: [$($case:ident),* $(,)?]) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let backend = $fixture().await;
                    crate::$cases::$case(backend.$port.clone()).await;
                }
            )*
        }
    };
}

/// Every store case, for one store backend.
macro_rules! store_contract {
    ($module:ident, $fixture:path) => {
        for_backend!($module, $fixture, store, store_cases: [
            stale_version_write_is_rejected_and_fresh_write_bumps_version,
            transaction_with_one_failing_condition_writes_nothing,
            concurrent_claims_admit_exactly_one_of_16,
            completed_claim_reports_completed_and_released_claim_is_free_again,
            lease_excludes_other_holders_until_expiry_and_renews_for_its_holder,
            invalidate_token_deletes_only_the_named_token,
            id_link_of_an_already_linked_side_id_is_rejected,
            audit_lists_newest_first_in_cursor_pages,
            tenants_are_listed,
            customers_with_relations_are_listed_per_tenant,
            runs_are_versioned_and_listed_newest_first,
            transfer_runs_of_the_largest_size_round_trip,
            queue_marks_are_replaced_updated_only_while_present_and_listed_per_tenant,
            rules_are_versioned_listed_per_tenant_and_deleted_at_their_version,
            firings_page_newest_first_per_rule_and_are_versioned,
            channels_are_stored_listed_and_deleted,
            counter_admits_exactly_its_limit_of_16_concurrent_callers_and_fills_at_once,
            scoped_group_round_trips_with_its_rule_group_range_and_mall_switch,
            a_members_run_over_50000_staff_keeps_every_item_under_400_kb,
            directory_of_2000_staff_round_trips_versioned_per_tenant,
        ]);
    };
}

/// Every queue case, for one queue backend.
macro_rules! queue_contract {
    ($module:ident, $fixture:path) => {
        for_backend!($module, $fixture, queue, queue_cases: [
            received_job_is_invisible_until_its_visibility_timeout_then_redelivered,
            extended_job_stays_invisible_for_three_visibility_timeouts_then_comes_back_once_the_extends_stop,
            retried_job_is_delivered_again_after_its_delay,
            rescheduled_job_comes_back_after_its_delay_without_counting_the_receive,
            parked_job_is_counted_listed_with_its_reason_and_redriven,
            counts_track_pending_in_flight_and_dead,
            send_of_25_jobs_in_one_call_delivers_all,
            job_never_acked_is_parked_after_max_receives,
            reschedule_beyond_the_longest_delay_is_cut_to_it_not_refused,
        ]);
    };
}

/// Every per-tenant counting case, for one queue backend that counts per tenant (SQLite; SQS
/// with its marks in DynamoDB: `queue::counted`).
macro_rules! tenant_counts_contract {
    ($module:ident, $fixture:path) => {
        for_backend!($module, $fixture, queue, queue_cases: [
            tenant_counts_follow_each_tenants_jobs_only,
            tenant_counts_show_a_job_the_queue_parked_itself_as_dead,
        ]);
    };
}

/// Every item-layer case, for one item backend.
macro_rules! items_contract {
    ($module:ident, $fixture:path) => {
        for_backend!($module, $fixture, items, items_cases: [
            query_walks_a_prefix_from_a_cursor_in_both_directions,
            query_fills_its_limit_across_backend_pages,
            expired_item_reads_as_absent,
        ]);
    };
}

/// The customer index's cases, for one store backend.
macro_rules! customer_index_contract {
    ($module:ident, $fixture:path) => {
        for_backend!($module, $fixture, store, customer_cases: [
            customer_index_answers_each_filter_exactly_in_pages_with_the_total,
            customer_index_rewrite_moves_a_customer_between_filters_and_stale_writes_are_refused,
        ]);
    };
}

customer_index_contract!(customers_sqlite, crate::backends::sqlite_store);
customer_index_contract!(customers_dynamo, crate::backends::dynamo_store);
items_contract!(items_sqlite, crate::backends::sqlite_items);
items_contract!(items_dynamo, crate::backends::dynamo_items);
// The limit the size cases are measured against, enforced by the stand-in as by AWS.
for_backend!(items_dynamo_limits, crate::backends::dynamo_items, items, size_cases: [
    an_item_over_400_kb_is_refused,
]);
store_contract!(store_sqlite, crate::backends::sqlite_store);
store_contract!(store_dynamo, crate::backends::dynamo_store);
queue_contract!(queue_sqlite, crate::backends::sqlite_queue);
queue_contract!(queue_sqs, crate::backends::sqs_queue);
queue_contract!(queue_sqs_counted, crate::backends::sqs_counted_queue);
tenant_counts_contract!(tenant_counts_sqlite, crate::backends::sqlite_queue);
tenant_counts_contract!(
    tenant_counts_sqs_counted,
    crate::backends::sqs_counted_queue
);
