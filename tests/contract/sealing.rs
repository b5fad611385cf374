//! Tenant secrets sealed at rest, on both store backends: never in the raw item, read back by
//! a later process with the same key, refused with another; plain records of an older version
//! sealed. And the Lambdas' KMS data key, against moto's KMS (GenerateDataKey / Decrypt): only
//! its wrapped form is stored, and a cold start unwraps it.

use crate::backends::{aws_config_for, dynamo_client_and_table};
use tagsync::domain::*;
use tagsync::ports::Store;
use tagsync::store::TableStore;
use tagsync::store::dynamo::DynamoItems;
use tagsync::store::item::ItemBackend;
use tagsync::store::sealing::{KeySource, KmsKey, SealError, SecretKey};
use tagsync::store::sqlite::{SqliteDb, SqliteItems};

const SECRETS: [&str; 5] = [
    "corp-secret-1",
    "callback-token-2",
    "encoding-aes-key-3",
    "mall-token-4",
    "webhook-secret-5",
];

fn tenant() -> Tenant {
    Tenant {
        id: TenantId::parse("acme").unwrap(),
        corp_id: CorpId::new_unchecked("wwcorp"),
        agent_id: "1000002".into(),
        mall_api_base: "https://mall.example.com/api".into(),
        secrets: TenantSecrets {
            corp_secret: Secret::new(SECRETS[0]),
            callback_token: Secret::new(SECRETS[1]),
            encoding_aes_key: Secret::new(SECRETS[2]),
            mall_api_token: Secret::new(SECRETS[3]),
            mall_webhook_secret: Secret::new(SECRETS[4]),
            message_feed_secret: None,
        },
        settings: Settings::default(),
        created_at: Timestamp::from_millis(0),
        updated_at: Timestamp::from_millis(0),
        version: 0,
    }
}

/// The raw stored form of tenant `acme`.
async fn raw_tenant<B: ItemBackend>(store: &TableStore<B>) -> String {
    store
        .backend()
        .get("TENANT#acme", "META")
        .await
        .unwrap()
        .expect("tenant item")
        .data
}

fn plain_in(raw: &str) -> Vec<&'static str> {
    SECRETS
        .iter()
        .copied()
        .filter(|s| raw.contains(s))
        .collect()
}

/// `open()` gives a fresh handle on one and the same storage each call (a process restart).
async fn secrets_are_sealed_and_read_back_only_with_their_key<B: ItemBackend>(
    open: impl Fn() -> B,
) {
    let key = SecretKey::generate();
    let store = TableStore::new(open())
        .unlock(&KeySource::Local(key.clone()))
        .await
        .unwrap();
    store.put_tenant(&mut tenant()).await.unwrap();
    let raw = raw_tenant(&store).await;
    assert!(raw.contains("sealed:v1:"), "{raw}");
    assert_eq!(plain_in(&raw), Vec::<&str>::new(), "{raw}");
    // Access tokens are sealed too.
    let mut token = AccessToken {
        corp_id: CorpId::new_unchecked("wwcorp"),
        secret_fingerprint: "fp".into(),
        token: Secret::new("access-token-value"),
        expires_at: Timestamp::from_millis(i64::MAX / 2),
        version: 0,
    };
    store.put_token(&mut token).await.unwrap();
    let raw_token = store
        .backend()
        .get("TOKEN#wwcorp#fp", "-")
        .await
        .unwrap()
        .unwrap();
    assert!(!raw_token.data.contains("access-token-value"));

    // Another process with the same key reads them.
    let again = TableStore::new(open())
        .unlock(&KeySource::Local(key.clone()))
        .await
        .unwrap();
    let t = again.get_tenant(&tenant().id).await.unwrap().unwrap();
    assert_eq!(t.secrets, tenant().secrets);
    assert_eq!(
        again.list_tenants().await.unwrap()[0].secrets,
        tenant().secrets
    );
    let read = again
        .get_token(&token.corp_id, "fp")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.token.expose(), "access-token-value");

    // Another key is refused at once, naming both.
    let other = SecretKey::generate();
    match TableStore::new(open())
        .unlock(&KeySource::Local(other.clone()))
        .await
    {
        Err(SealError::WrongKey { stored, given }) => {
            assert_eq!((stored, given), (key.id(), other.id()));
        }
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("another key opened the store"),
    }
}

async fn plain_tenants_of_an_older_version_are_sealed<B: ItemBackend>(open: impl Fn() -> B) {
    let old = TableStore::new(open());
    old.put_tenant(&mut tenant()).await.unwrap();
    assert_eq!(plain_in(&raw_tenant(&old).await).len(), 5);

    let store = TableStore::new(open())
        .unlock(&KeySource::Local(SecretKey::generate()))
        .await
        .unwrap();
    assert_eq!(store.seal_plain_records().await.unwrap(), 1);
    assert_eq!(plain_in(&raw_tenant(&store).await), Vec::<&str>::new());
    assert_eq!(store.seal_plain_records().await.unwrap(), 0, "nothing left");
    let t = store.get_tenant(&tenant().id).await.unwrap().unwrap();
    assert_eq!(t.secrets, tenant().secrets);
}

fn sqlite_opener() -> (tempfile::TempDir, impl Fn() -> SqliteItems) {
    let dir = tempfile::tempdir().unwrap();
    let db = SqliteDb::open_in_dir(dir.path()).unwrap();
    (dir, move || SqliteItems::new(db.clone()))
}

async fn dynamo_opener() -> impl Fn() -> DynamoItems {
    let (client, table) = dynamo_client_and_table().await;
    move || DynamoItems::new(client.clone(), table.clone())
}

mod sealing_sqlite {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn secrets_are_sealed_and_read_back_only_with_their_key() {
        let (_dir, open) = sqlite_opener();
        super::secrets_are_sealed_and_read_back_only_with_their_key(open).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn plain_tenants_of_an_older_version_are_sealed() {
        let (_dir, open) = sqlite_opener();
        super::plain_tenants_of_an_older_version_are_sealed(open).await;
    }
}

mod sealing_dynamo {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn secrets_are_sealed_and_read_back_only_with_their_key() {
        super::secrets_are_sealed_and_read_back_only_with_their_key(dynamo_opener().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn plain_tenants_of_an_older_version_are_sealed() {
        super::plain_tenants_of_an_older_version_are_sealed(dynamo_opener().await).await;
    }
}

/// A KMS key of this test's own in moto (server mode).
async fn kms_key() -> KmsKey {
    let config = aws_config_for("TAGSYNC_TEST_KMS_ENDPOINT").await;
    let client = aws_sdk_kms::Client::new(&config);
    let created = client
        .create_key()
        .description("tagsync contract test")
        .send()
        .await
        .unwrap_or_else(|e| panic!("create a KMS key in moto: {e:?}"));
    let key_id = created.key_metadata().unwrap().arn().unwrap().to_string();
    KmsKey { client, key_id }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_data_key_is_stored_only_wrapped_and_a_cold_start_unwraps_it() {
    let open = dynamo_opener().await;
    let kms = kms_key().await;
    let store = TableStore::new(open())
        .unlock(&KeySource::Kms(kms.clone()))
        .await
        .unwrap();
    store.put_tenant(&mut tenant()).await.unwrap();
    assert_eq!(plain_in(&raw_tenant(&store).await), Vec::<&str>::new());

    // The key record holds the data key as KMS wrapped it; unwrapping it (as only a holder of
    // kms:Decrypt on that key can) gives a key the record's plaintext does not contain.
    let record = store
        .backend()
        .get("SEALING", "KEY")
        .await
        .unwrap()
        .unwrap();
    let record: serde_json::Value = serde_json::from_str(&record.data).unwrap();
    assert_eq!(record["scheme"], "kms");
    assert_eq!(record["kms_key_id"], kms.key_id.as_str());
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let wrapped = b64.decode(record["wrapped_key"].as_str().unwrap()).unwrap();
    let unwrapped = kms
        .client
        .decrypt()
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(wrapped))
        .encryption_context("purpose", "tagsync-tenant-secrets")
        .send()
        .await
        .unwrap();
    let data_key = SecretKey::from_bytes(unwrapped.plaintext().unwrap().as_ref()).unwrap();
    assert_eq!(record["key_id"], data_key.id().as_str());
    assert!(!record.to_string().contains(&data_key.to_base64()));

    // A cold start (a new sandbox) unwraps the same data key and reads the secrets.
    let cold = TableStore::new(open())
        .unlock(&KeySource::Kms(kms.clone()))
        .await
        .unwrap();
    let t = cold.get_tenant(&tenant().id).await.unwrap().unwrap();
    assert_eq!(t.secrets, tenant().secrets);

    // A local key cannot stand in for the KMS data key.
    match TableStore::new(open())
        .unlock(&KeySource::Local(SecretKey::generate()))
        .await
    {
        Err(SealError::WrongScheme { .. }) => {}
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("a local key opened a KMS-sealed store"),
    }
}
