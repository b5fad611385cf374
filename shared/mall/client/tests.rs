use super::transport::endpoint_url;
use super::*;
use crate::domain::{JobId, MallTagId};
use reqwest::Method;
use serde_json::json;
use std::collections::BTreeSet;

#[tokio::test(start_paused = true)]
async fn the_pace_lets_a_fifth_of_a_second_through_then_one_request_per_share_of_a_second() {
    let pace = Pace::new(50);
    let waits: Vec<Duration> = (0..12).map(|_| pace.reserve("mall-a")).collect();
    assert!(waits[..10].iter().all(|w| w.is_zero()), "{waits:?}");
    assert_eq!(waits[10], Duration::from_millis(20));
    assert_eq!(waits[11], Duration::from_millis(40));
    assert!(
        pace.reserve("mall-b").is_zero(),
        "each mall has its own bucket"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(pace.reserve("mall-a").is_zero(), "refilled after a second");
}

fn err(code: &str) -> ErrorDetail {
    ErrorDetail {
        code: code.to_owned(),
        message: "m".to_owned(),
        ..ErrorDetail::default()
    }
}

fn tag_ids(prefix: &str, n: usize) -> Vec<MallTagId> {
    (0..n)
        .map(|i| MallTagId::new_unchecked(format!("{prefix}{i:03}")))
        .collect()
}

#[test]
fn two_hundreds_are_success() {
    for status in [200, 201, 204] {
        assert_eq!(
            classify(&Method::POST, status, None, None),
            Verdict::Success
        );
    }
}

#[test]
fn a_missing_object_is_done_only_for_delete() {
    let nf = err("not_found");
    assert_eq!(
        classify(&Method::DELETE, 404, None, Some(&nf)),
        Verdict::AlreadyDone
    );
    assert!(matches!(
        classify(&Method::PATCH, 404, None, Some(&nf)),
        Verdict::Permanent(_)
    ));
    assert!(matches!(
        classify(&Method::GET, 404, None, None),
        Verdict::Permanent(_)
    ));
}

#[test]
fn name_taken_surfaces_the_existing_id() {
    let mut e = err("name_taken");
    e.existing_id = Some("t_9".to_owned());
    assert_eq!(
        classify(&Method::POST, 409, None, Some(&e)),
        Verdict::NameTaken {
            existing_id: "t_9".to_owned()
        }
    );
    // Without the id there is nothing to adopt.
    assert!(matches!(
        classify(&Method::POST, 409, None, Some(&err("name_taken"))),
        Verdict::Permanent(_)
    ));
}

#[test]
fn rate_limits_honour_retry_after_seconds() {
    let rl = err("rate_limited");
    assert_eq!(
        classify(&Method::GET, 429, Some("7"), Some(&rl)),
        Verdict::RetryAfter(Duration::from_secs(7))
    );
    assert_eq!(
        classify(&Method::GET, 429, None, Some(&rl)),
        Verdict::RetryAfter(DEFAULT_RETRY_AFTER)
    );
    assert_eq!(
        classify(
            &Method::GET,
            429,
            Some("Wed, 21 Oct 2026 07:28:00 GMT"),
            None
        ),
        Verdict::RetryAfter(DEFAULT_RETRY_AFTER)
    );
    assert_eq!(
        classify(&Method::GET, 429, Some("999999"), None),
        Verdict::RetryAfter(MAX_RETRY_AFTER)
    );
}

#[test]
fn server_errors_are_transient() {
    for status in [500, 502, 503, 504] {
        assert_eq!(
            classify(&Method::POST, status, None, None),
            Verdict::RetryAfter(DEFAULT_RETRY_AFTER)
        );
    }
    assert_eq!(
        classify(&Method::POST, 503, Some("3"), None),
        Verdict::RetryAfter(Duration::from_secs(3))
    );
}

#[test]
fn client_errors_are_permanent_with_their_reason() {
    assert_eq!(
        classify(&Method::GET, 401, None, Some(&err("unauthorized"))),
        Verdict::Permanent("bad mall token".to_owned())
    );
    let mut unknown = err("unknown_tag");
    unknown.unknown_ids = vec!["t_1".to_owned(), "t_2".to_owned()];
    assert_eq!(
        classify(&Method::POST, 400, None, Some(&unknown)),
        Verdict::Permanent("unknown tag ids: t_1, t_2".to_owned())
    );
    let mut invalid = err("invalid_request");
    invalid.message = "name must be 1 to 30 characters".to_owned();
    assert_eq!(
        classify(&Method::POST, 400, None, Some(&invalid)),
        Verdict::Permanent("400 invalid_request: name must be 1 to 30 characters".to_owned())
    );
    assert_eq!(
        classify(&Method::POST, 403, None, None),
        Verdict::Permanent("HTTP 403".to_owned())
    );
}

#[test]
fn errors_know_whether_they_are_retryable() {
    let e = MallError {
        op: "create_tag",
        status: Some(429),
        code: Some("rate_limited".to_owned()),
        message: "slow down".to_owned(),
        verdict: Verdict::RetryAfter(Duration::from_secs(2)),
        unknown_ids: Box::default(),
    };
    assert!(e.retryable());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
    assert_eq!(e.rate_limited(), Some(Duration::from_secs(2)));
    assert_eq!(
        e.to_string(),
        "mall create_tag: HTTP 429 (slow down), retry after 2000 ms"
    );
    // A 503 is retried too, but it is not the mall's rate limit.
    let unavailable = MallError {
        status: Some(503),
        ..e.clone()
    };
    assert!(unavailable.retryable());
    assert_eq!(unavailable.rate_limited(), None);
    let e = MallError {
        verdict: Verdict::NameTaken {
            existing_id: "g_1".to_owned(),
        },
        status: Some(409),
        ..e
    };
    assert!(!e.retryable());
    assert_eq!(e.existing_id(), Some("g_1"));
}

#[test]
fn keys_are_deterministic_and_distinct_per_step() {
    let job = JobId::new_unchecked("0193a1b2c3");
    let a = IdempotencyKey::for_step(&job, "create-tag:h1");
    assert_eq!(a, IdempotencyKey::for_step(&job, "create-tag:h1"));
    assert_eq!(a.as_str(), "tagsync:0193a1b2c3:create-tag:h1");
    assert_ne!(a, IdempotencyKey::for_step(&job, "create-tag:h2"));
    assert_ne!(
        a,
        IdempotencyKey::for_step(&JobId::new_unchecked("other"), "create-tag:h1")
    );
    assert_eq!(a.derive("1"), a.derive("1"));
    assert_ne!(a.derive("1"), a.derive("2"));
}

#[test]
fn long_or_unusual_keys_are_bounded_header_safe_and_still_distinct() {
    let job = JobId::new_unchecked("j");
    let long_a = IdempotencyKey::for_step(&job, &"a".repeat(500));
    let long_b = IdempotencyKey::for_step(&job, &format!("{}b", "a".repeat(499)));
    assert!(long_a.as_str().len() <= MAX_IDEMPOTENCY_KEY_CHARS);
    assert_ne!(long_a, long_b);
    let odd = IdempotencyKey::for_step(&job, "rename:高价值 客户\n");
    assert!(odd.as_str().chars().all(|c| c.is_ascii_graphic()), "{odd}");
    assert_ne!(odd, IdempotencyKey::for_step(&job, "rename:高价值 客户"));
    assert!(reqwest::header::HeaderValue::from_str(odd.as_str()).is_ok());
}

#[test]
fn member_tag_changes_split_into_batches_of_at_most_100_ids() {
    let add = tag_ids("a", 130);
    let remove = tag_ids("r", 90);
    let batches = member_tag_batches(&add, &remove).unwrap();
    assert_eq!(batches.len(), 3);
    assert!(
        batches
            .iter()
            .all(|b| b.add.len() + b.remove.len() <= MAX_IDS_PER_MEMBER_CALL)
    );
    let all_add: Vec<_> = batches.iter().flat_map(|b| b.add.clone()).collect();
    let all_remove: Vec<_> = batches.iter().flat_map(|b| b.remove.clone()).collect();
    assert_eq!(all_add, add);
    assert_eq!(all_remove, remove);
    // Distinct content, distinct keys.
    let prints: BTreeSet<_> = batches.iter().map(MemberTagBatch::fingerprint).collect();
    assert_eq!(prints.len(), 3);
}

#[test]
fn batches_do_not_depend_on_input_order_or_duplicates() {
    let mut add = tag_ids("a", 5);
    let once = member_tag_batches(&add, &[]).unwrap();
    add.reverse();
    add.push(add[0].clone());
    assert_eq!(member_tag_batches(&add, &[]).unwrap(), once);
}

#[test]
fn an_id_both_added_and_removed_is_refused() {
    let ids = tag_ids("x", 2);
    let err = member_tag_batches(&ids, &ids[1..]).unwrap_err();
    assert!(err.contains("x001"), "{err}");
}

#[test]
fn nothing_to_change_is_one_empty_batch() {
    let batches = member_tag_batches(&[], &[]).unwrap();
    assert_eq!(
        batches,
        vec![MemberTagBatch {
            add: vec![],
            remove: vec![]
        }]
    );
}

#[test]
fn urls_append_encoded_segments_to_the_base_path() {
    let url = endpoint_url("https://mall.example/api/v1/", &["tags", "t 1/2"]).unwrap();
    assert_eq!(url.as_str(), "https://mall.example/api/v1/tags/t%201%2F2");
    let url = endpoint_url("http://127.0.0.1:8080", &["members:lookup"]).unwrap();
    assert_eq!(url.as_str(), "http://127.0.0.1:8080/members:lookup");
    assert!(endpoint_url("not a url", &["tags"]).is_none());
}

#[test]
fn decoding_is_lenient_about_extra_fields() {
    let m: MallMember = serde_json::from_value(json!({
        "id": "m_1", "unionid": null, "external_userid": "wm1", "mobile": null,
        "tag_ids": ["t_1"], "nickname": "extra"
    }))
    .unwrap();
    assert_eq!(m.external_userid.unwrap().as_str(), "wm1");
    let g: MallGroupWithTags = serde_json::from_value(json!({
        "id": "g_1", "name": "Level", "order": 2, "color": "red",
        "tags": [{"id": "t_1", "group_id": "g_1", "name": "VIP", "order": 0, "x": 1}]
    }))
    .unwrap();
    assert_eq!(g.tags.len(), 1);
    assert_eq!(g.group.name, "Level");
}

#[test]
fn the_endpoint_never_shows_its_token() {
    let ep = MallEndpoint {
        base_url: "http://mall".to_owned(),
        token: Secret::new("super-secret-token"),
    };
    assert!(!format!("{ep:?}").contains("super-secret-token"));
}
