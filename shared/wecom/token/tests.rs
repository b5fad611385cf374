use super::*;
use crate::ports::ManualClock;
use crate::store::sqlite::{SqliteDb, open_store};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    clock: ManualClock,
    fetches: Arc<AtomicUsize>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = SqliteDb::open_in_dir(dir.path()).unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    Fixture {
        _dir: dir,
        store: Arc::new(open_store(&db)),
        clock: ManualClock::starting_at(Timestamp::from_millis(now)),
        fetches: Arc::new(AtomicUsize::new(0)),
    }
}

impl Fixture {
    fn cache(&self) -> TokenCache {
        TokenCache::new(
            self.store.clone(),
            Arc::new(self.clock.clone()),
            TokenConfig::default(),
        )
    }

    /// A `gettoken` that answers `tok-N` valid for `lifetime` seconds.
    fn fetcher(
        &self,
        lifetime: i64,
    ) -> impl FnOnce() -> std::future::Ready<Result<FetchedToken, WecomError>> + use<> {
        let fetches = self.fetches.clone();
        move || {
            let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
            std::future::ready(Ok(FetchedToken {
                access_token: Secret::new(format!("tok-{n}")),
                expires_in_secs: lifetime,
            }))
        }
    }
}

fn creds() -> WecomCredentials {
    WecomCredentials {
        corp_id: CorpId::new_unchecked("wwcorp"),
        secret: Secret::new("s3cret"),
    }
}

#[test]
fn fingerprint_is_a_stable_prefix_and_not_the_secret() {
    let a = secret_fingerprint(&Secret::new("s3cret"));
    assert_eq!(a.len(), 16);
    assert_eq!(a, secret_fingerprint(&Secret::new("s3cret")));
    assert_ne!(a, secret_fingerprint(&Secret::new("other")));
    assert!(!a.contains("s3cret"));
}

#[tokio::test]
async fn a_cached_token_is_reused_until_the_refresh_window() {
    let f = fixture();
    let cache = f.cache();
    let t1 = cache.get(&creds(), f.fetcher(7200)).await.unwrap();
    f.clock.advance_millis(7_200_000 - 301_000);
    let t2 = cache.get(&creds(), f.fetcher(7200)).await.unwrap();
    assert_eq!(t1, t2);
    assert_eq!(f.fetches.load(Ordering::SeqCst), 1);
    // Inside the window the next caller refreshes.
    f.clock.advance_millis(2_000);
    let t3 = cache.get(&creds(), f.fetcher(7200)).await.unwrap();
    assert_eq!(t3.expose(), "tok-2");
    assert_eq!(f.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_repeated_token_near_its_end_is_not_refetched_on_every_call() {
    let f = fixture();
    let cache = f.cache();
    cache.get(&creds(), f.fetcher(7200)).await.unwrap();
    f.clock.advance_millis(7_200_000 - 200_000);
    // WeCom answers with the same lifetime end: 200 s left.
    let again = || {
        std::future::ready(Ok(FetchedToken {
            access_token: Secret::new("tok-1"),
            expires_in_secs: 200,
        }))
    };
    for _ in 0..5 {
        assert_eq!(cache.get(&creds(), again).await.unwrap().expose(), "tok-1");
    }
    // One early attempt per `retry_ahead_every`: the fetcher below must not run.
    let t = cache.get(&creds(), f.fetcher(7200)).await.unwrap();
    assert_eq!(t.expose(), "tok-1");
    assert_eq!(f.fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn invalidate_drops_only_the_token_that_failed() {
    let f = fixture();
    let cache = f.cache();
    let t1 = cache.get(&creds(), f.fetcher(7200)).await.unwrap();
    cache.invalidate(&creds(), &t1).await.unwrap();
    let t2 = cache.get(&creds(), f.fetcher(7200)).await.unwrap();
    assert_ne!(t1, t2);
    // A late report about the old token leaves the new one alone.
    cache.invalidate(&creds(), &t1).await.unwrap();
    let t3 = cache.get(&creds(), f.fetcher(7200)).await.unwrap();
    assert_eq!(t2, t3);
    let c = creds();
    let fp = secret_fingerprint(&c.secret);
    let stored = f.store.get_token(&c.corp_id, &fp).await.unwrap();
    assert_eq!(stored.unwrap().token, t2);
    assert_eq!(f.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_token_refused_here_is_not_taken_back_from_the_store() {
    let f = fixture();
    let cache = f.cache();
    let t1 = cache.get(&creds(), f.fetcher(7200)).await.unwrap();
    cache.invalidate(&creds(), &t1).await.unwrap();
    // The store still shows the refused token, as it does to a refresher that read it
    // just before the invalidation landed.
    let c = creds();
    let fp = secret_fingerprint(&c.secret);
    let mut stale = AccessToken {
        corp_id: c.corp_id.clone(),
        secret_fingerprint: fp.clone(),
        token: t1.clone(),
        expires_at: f.clock.now().plus_secs(7000),
        version: 0,
    };
    f.store.put_token(&mut stale).await.unwrap();
    let t2 = cache.get(&creds(), f.fetcher(7200)).await.unwrap();
    assert_ne!(t2, t1);
    assert_eq!(f.fetches.load(Ordering::SeqCst), 2);
    let stored = f.store.get_token(&c.corp_id, &fp).await.unwrap();
    assert_eq!(
        stored.unwrap().token,
        t2,
        "the new token replaced the refused one"
    );
}

#[tokio::test]
async fn a_refused_token_that_gettoken_answers_again_is_used() {
    let f = fixture();
    let cache = f.cache();
    let t1 = cache.get(&creds(), f.fetcher(7200)).await.unwrap();
    cache.invalidate(&creds(), &t1).await.unwrap();
    // WeCom may answer a `gettoken` with the very token it refused: its word is taken.
    let same = t1.clone();
    let again = move || {
        std::future::ready(Ok(FetchedToken {
            access_token: same,
            expires_in_secs: 7000,
        }))
    };
    assert_eq!(cache.get(&creds(), again).await.unwrap(), t1);
    // And it is then cached like any token.
    assert_eq!(cache.get(&creds(), f.fetcher(7200)).await.unwrap(), t1);
    assert_eq!(f.fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_second_process_uses_the_stored_token() {
    let f = fixture();
    let a = f.cache();
    let b = f.cache();
    let ta = a.get(&creds(), f.fetcher(7200)).await.unwrap();
    let tb = b.get(&creds(), f.fetcher(7200)).await.unwrap();
    assert_eq!(ta, tb);
    assert_eq!(f.fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failed_fetch_with_no_valid_token_is_an_error() {
    let f = fixture();
    let cache = f.cache();
    let failing = || {
        std::future::ready(Err(WecomError {
            op: ApiOp::GetToken,
            errcode: Some(40001),
            http_status: None,
            message: "bad secret".into(),
            verdict: Verdict::Permanent("bad secret".into()),
        }))
    };
    let e = cache.get(&creds(), failing).await.unwrap_err();
    assert_eq!(e.errcode, Some(40001));
    // The lease was released: the next caller can fetch.
    assert!(cache.get(&creds(), f.fetcher(7200)).await.is_ok());
}
