//! One contract, every backend: the embedded SQLite store and Azure Table storage (real Azurite)
//! must behave the same, so code tested on one runs on the other. Same for the blob stores.

use bridge::store::azure_table::AzureTableStore;
use bridge::store::blob::{AzureBlobStore, BlobStore, FsBlobStore};
use bridge::store::sqlite::SqliteStore;
use bridge::store::{tables, BatchOp, ETag, Entity, Prop, Store, StoreError};
use std::sync::Arc;

const T: &str = tables::MAPPINGS;

/// A store plus whatever keeps it alive (a temp dir for SQLite).
struct Fixture {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
    store.ensure_tables().await.unwrap();
    Fixture {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

async fn azure() -> Fixture {
    let settings = testkit::azurite::storage_settings("contract");
    let store = AzureTableStore::new(&settings).unwrap();
    store.ensure_tables().await.unwrap();
    // Idempotent: a second call (tables already there) succeeds too.
    store.ensure_tables().await.unwrap();
    Fixture {
        store: Arc::new(store),
        _dir: None,
    }
}

fn is<T: std::fmt::Debug>(r: Result<T, StoreError>, want: fn(&StoreError) -> bool, what: &str) {
    match r {
        Err(e) if want(&e) => {}
        other => panic!("{what}: expected a matching error, got {other:?}"),
    }
}

fn conflict(e: &StoreError) -> bool {
    matches!(e, StoreError::Conflict)
}
fn precondition(e: &StoreError) -> bool {
    matches!(e, StoreError::PreconditionFailed)
}
fn not_found(e: &StoreError) -> bool {
    matches!(e, StoreError::NotFound)
}
fn invalid(e: &StoreError) -> bool {
    matches!(e, StoreError::Invalid(_))
}

/// The contract, written once against `dyn Store`.
mod contract {
    use super::*;

    pub async fn insert_get_conflict(s: &dyn Store) {
        let e = Entity::new("p1", "r1")
            .with("name", "alice")
            .with("n", 1i64);
        let tag = s.insert(T, &e).await.unwrap();
        is(s.insert(T, &e).await, conflict, "duplicate insert");
        let got = s
            .get(T, "p1", "r1")
            .await
            .unwrap()
            .expect("inserted entity");
        assert_eq!(got.partition_key, "p1");
        assert_eq!(got.row_key, "r1");
        assert_eq!(got.props, e.props);
        assert_eq!(
            got.etag.as_ref(),
            Some(&tag),
            "get returns the ETag of the last write"
        );
        assert!(s.get(T, "p1", "missing").await.unwrap().is_none());
        assert!(s.get(T, "missing", "r1").await.unwrap().is_none());
    }

    pub async fn upsert(s: &dyn Store) {
        let t1 = s
            .upsert(T, &Entity::new("p", "u").with("a", "1").with("b", true))
            .await
            .unwrap();
        let t2 = s
            .upsert(T, &Entity::new("p", "u").with("a", "2"))
            .await
            .unwrap();
        assert_ne!(t1, t2);
        let got = s.get(T, "p", "u").await.unwrap().unwrap();
        assert_eq!(got.str("a"), Some("2"));
        assert_eq!(
            got.props.len(),
            1,
            "upsert replaces the whole entity: {:?}",
            got.props
        );
        assert_eq!(got.etag, Some(t2));
    }

    pub async fn replace(s: &dyn Store) {
        let e = Entity::new("p", "r").with("v", 1i64);
        let t1 = s.insert(T, &e).await.unwrap();
        let t2 = s.replace(T, &e.clone().with("v", 2i64), &t1).await.unwrap();
        assert_ne!(t1, t2);
        assert_eq!(s.get(T, "p", "r").await.unwrap().unwrap().int("v"), Some(2));
        is(
            s.replace(T, &e.clone().with("v", 3i64), &t1).await,
            precondition,
            "replace with a stale ETag",
        );
        assert_eq!(
            s.get(T, "p", "r").await.unwrap().unwrap().int("v"),
            Some(2),
            "stale replace changed nothing"
        );
        is(
            s.replace(T, &Entity::new("p", "gone").with("v", 1i64), &t2)
                .await,
            not_found,
            "replace of a missing row",
        );
    }

    pub async fn delete(s: &dyn Store) {
        let e = Entity::new("p", "d");
        let t1 = s.insert(T, &e).await.unwrap();
        let t2 = s.upsert(T, &e.clone().with("x", 1i64)).await.unwrap();
        is(
            s.delete(T, "p", "d", Some(&t1)).await,
            precondition,
            "delete with a stale ETag",
        );
        assert!(s.get(T, "p", "d").await.unwrap().is_some());
        s.delete(T, "p", "d", Some(&t2)).await.unwrap();
        assert!(s.get(T, "p", "d").await.unwrap().is_none());
        is(
            s.delete(T, "p", "d", None).await,
            not_found,
            "unconditional delete of a missing row",
        );
        is(
            s.delete(T, "p", "d", Some(&t2)).await,
            not_found,
            "conditional delete of a missing row",
        );
        s.insert(T, &e).await.unwrap();
        s.delete(T, "p", "d", None).await.unwrap();
        assert!(s.get(T, "p", "d").await.unwrap().is_none());
    }

    async fn all_pages(s: &dyn Store, pk: &str, page_size: usize) -> (Vec<String>, usize) {
        let mut keys = Vec::new();
        let mut pages = 0;
        let mut cont: Option<String> = None;
        loop {
            let page = s.query(T, pk, cont.as_deref(), page_size).await.unwrap();
            pages += 1;
            assert!(page.entities.len() <= page_size);
            assert!(page
                .entities
                .iter()
                .all(|e| e.partition_key == pk && e.etag.is_some()));
            keys.extend(page.entities.iter().map(|e| e.row_key.clone()));
            match page.next {
                Some(n) => cont = Some(n),
                None => break,
            }
            assert!(pages < 100, "paging does not end");
        }
        (keys, pages)
    }

    pub async fn query_paging(s: &dyn Store) {
        // Inserted out of order, with neighbours in other partitions that must not leak in.
        for rk in ["g", "c", "a", "f", "b", "e", "d"] {
            s.insert(T, &Entity::new("q", rk).with("rk", rk))
                .await
                .unwrap();
        }
        s.insert(T, &Entity::new("p", "a")).await.unwrap();
        s.insert(T, &Entity::new("qq", "a")).await.unwrap();
        s.insert(T, &Entity::new("r", "a")).await.unwrap();

        let (keys, pages) = all_pages(s, "q", 2).await;
        assert_eq!(
            keys,
            ["a", "b", "c", "d", "e", "f", "g"],
            "row-key order, no duplicates"
        );
        assert_eq!(pages, 4);

        let first = s.query(T, "q", None, 2).await.unwrap();
        assert_eq!(first.next.as_deref(), Some("b"));
        let from_c = s.query(T, "q", Some("c"), 3).await.unwrap();
        let rks: Vec<_> = from_c.entities.iter().map(|e| e.row_key.as_str()).collect();
        assert_eq!(rks, ["d", "e", "f"]);
        assert_eq!(from_c.entities[0].str("rk"), Some("d"));
        // ETags read by a query are good for a conditional write.
        let d = from_c.entities[0].clone();
        let tag = d.etag.clone().unwrap();
        s.replace(T, &d.clone().with("seen", true), &tag)
            .await
            .unwrap();
        is(
            s.replace(T, &d, &tag).await,
            precondition,
            "query ETag after a write",
        );

        // An exact multiple of the page size ends without an empty extra page.
        s.delete(T, "q", "g", None).await.unwrap();
        let (keys, pages) = all_pages(s, "q", 2).await;
        assert_eq!(keys.len(), 6);
        assert_eq!(pages, 3);

        let (all, pages) = all_pages(s, "q", 1000).await;
        assert_eq!((all.len(), pages), (6, 1));
        let empty = s.query(T, "nobody", None, 5).await.unwrap();
        assert!(empty.entities.is_empty() && empty.next.is_none());
    }

    pub async fn batch_all_or_nothing(s: &dyn Store) {
        let stale = s
            .insert(T, &Entity::new("b", "a").with("v", 1i64))
            .await
            .unwrap();
        let current = s
            .replace(T, &Entity::new("b", "a").with("v", 2i64), &stale)
            .await
            .unwrap();
        s.insert(T, &Entity::new("b", "del")).await.unwrap();

        let failing = vec![
            BatchOp::Insert(Entity::new("b", "new1")),
            BatchOp::Upsert(Entity::new("b", "new2")),
            BatchOp::Replace(Entity::new("b", "a").with("v", 3i64), stale.clone()),
            BatchOp::Delete {
                row_key: "del".into(),
                if_match: None,
            },
        ];
        is(
            s.batch(T, "b", failing).await,
            precondition,
            "batch with a stale ETag",
        );
        assert!(
            s.get(T, "b", "new1").await.unwrap().is_none(),
            "insert of a failed batch was applied"
        );
        assert!(
            s.get(T, "b", "new2").await.unwrap().is_none(),
            "upsert of a failed batch was applied"
        );
        assert!(
            s.get(T, "b", "del").await.unwrap().is_some(),
            "delete of a failed batch was applied"
        );
        assert_eq!(s.get(T, "b", "a").await.unwrap().unwrap().int("v"), Some(2));

        let dup = vec![
            BatchOp::Insert(Entity::new("b", "new1")),
            BatchOp::Insert(Entity::new("b", "a")),
        ];
        is(
            s.batch(T, "b", dup).await,
            conflict,
            "batch inserting an existing row",
        );
        assert!(s.get(T, "b", "new1").await.unwrap().is_none());

        let missing = vec![
            BatchOp::Upsert(Entity::new("b", "new2")),
            BatchOp::Delete {
                row_key: "nope".into(),
                if_match: None,
            },
        ];
        is(
            s.batch(T, "b", missing).await,
            not_found,
            "batch deleting a missing row",
        );
        assert!(s.get(T, "b", "new2").await.unwrap().is_none());

        let ok = vec![
            BatchOp::Insert(Entity::new("b", "new1").with("i", 9_007_199_254_740_993i64)),
            BatchOp::Upsert(Entity::new("b", "new2")),
            BatchOp::Replace(Entity::new("b", "a").with("v", 3i64), current),
            BatchOp::Delete {
                row_key: "del".into(),
                if_match: None,
            },
        ];
        s.batch(T, "b", ok).await.unwrap();
        assert_eq!(
            s.get(T, "b", "new1").await.unwrap().unwrap().int("i"),
            Some(9_007_199_254_740_993)
        );
        assert!(s.get(T, "b", "new2").await.unwrap().is_some());
        assert_eq!(s.get(T, "b", "a").await.unwrap().unwrap().int("v"), Some(3));
        assert!(s.get(T, "b", "del").await.unwrap().is_none());

        // Limits are checked before anything is sent.
        let big: Vec<_> = (0..101)
            .map(|i| BatchOp::Upsert(Entity::new("b", format!("k{i:03}"))))
            .collect();
        is(s.batch(T, "b", big).await, invalid, "batch of 101");
        assert!(s.get(T, "b", "k000").await.unwrap().is_none());
        let hundred: Vec<_> = (0..100)
            .map(|i| BatchOp::Upsert(Entity::new("b", format!("k{i:03}"))))
            .collect();
        s.batch(T, "b", hundred).await.unwrap();
        let page = s.query(T, "b", Some("k"), 1000).await.unwrap();
        assert_eq!(
            page.entities
                .iter()
                .filter(|e| e.row_key.starts_with('k'))
                .count(),
            100
        );
        let spans = vec![BatchOp::Upsert(Entity::new("other", "x"))];
        is(
            s.batch(T, "b", spans).await,
            invalid,
            "batch across partitions",
        );
        s.batch(T, "b", Vec::new()).await.unwrap();
    }

    pub async fn exact_values(s: &dyn Store) {
        let text = "Élève Ñoël – o'connor \"quoted\" 'single' ✓ 🎓 日本語";
        let e = Entity::new("v", "all")
            .with("big", 9_007_199_254_740_993i64)
            .with("max", i64::MAX)
            .with("min", i64::MIN)
            .with("neg", -9_007_199_254_740_993i64)
            .with("zero", 0i64)
            .with("small", 42i64)
            .with("text", text)
            .with("numeric_text", "12345")
            .with("empty", "")
            .with("yes", true)
            .with("no", false)
            .with("half", 1.5)
            .with("whole", 2.0)
            .with("tenth", 0.1)
            .with("neg_float", -123456.789)
            .with("small_float", 1e-7)
            .with("json", r#"{"a":[1,2],"b":"c"}"#);
        s.insert(T, &e).await.unwrap();
        let got = s.get(T, "v", "all").await.unwrap().unwrap();
        for (name, want) in &e.props {
            assert_eq!(got.props.get(name), Some(want), "property {name}");
        }
        assert_eq!(
            got.props.len(),
            e.props.len(),
            "no extra properties: {:?}",
            got.props.keys()
        );
        assert_eq!(got.props["whole"], Prop::Float(2.0));
        // Query returns the same typed values as get.
        let page = s.query(T, "v", None, 10).await.unwrap();
        assert_eq!(page.entities[0].props, e.props);
    }

    pub async fn awkward_keys(s: &dyn Store) {
        let pk = "école o'connor";
        let keys = [
            "o'connor",
            "it''s",
            "'",
            "élève 🎓",
            "a b+c&d=e%f",
            "zz'end",
        ];
        for rk in keys {
            let tag = s
                .insert(T, &Entity::new(pk, rk).with("rk", rk))
                .await
                .unwrap();
            let got = s
                .get(T, pk, rk)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("get {rk:?}"));
            assert_eq!(
                (
                    got.partition_key.as_str(),
                    got.row_key.as_str(),
                    got.str("rk")
                ),
                (pk, rk, Some(rk))
            );
            let tag2 = s
                .replace(T, &Entity::new(pk, rk).with("rk", rk).with("n", 1i64), &tag)
                .await
                .unwrap();
            is(
                s.replace(T, &Entity::new(pk, rk), &tag).await,
                precondition,
                "stale replace on quoted key",
            );
            assert_eq!(s.get(T, pk, rk).await.unwrap().unwrap().etag, Some(tag2));
        }
        let mut sorted: Vec<&str> = keys.to_vec();
        sorted.sort();
        let mut seen = Vec::new();
        let mut cont: Option<String> = None;
        loop {
            // Continuations carry quotes too ("o'connor", "'").
            let page = s.query(T, pk, cont.as_deref(), 2).await.unwrap();
            seen.extend(page.entities.iter().map(|e| e.row_key.clone()));
            match page.next {
                Some(n) => cont = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, sorted);
        s.batch(
            T,
            pk,
            vec![
                BatchOp::Upsert(Entity::new(pk, "o'connor").with("batched", true)),
                BatchOp::Delete {
                    row_key: "it''s".into(),
                    if_match: None,
                },
            ],
        )
        .await
        .unwrap();
        assert_eq!(
            s.get(T, pk, "o'connor")
                .await
                .unwrap()
                .unwrap()
                .bool("batched"),
            Some(true)
        );
        assert!(s.get(T, pk, "it''s").await.unwrap().is_none());
        s.delete(T, pk, "o'connor", None).await.unwrap();
        assert!(s.get(T, pk, "o'connor").await.unwrap().is_none());
        // Characters Azure forbids in keys are refused by every backend.
        is(
            s.insert(T, &Entity::new("p", "a/b")).await,
            invalid,
            "slash in row key",
        );
        is(
            s.insert(T, &Entity::new("p#", "a")).await,
            invalid,
            "hash in partition key",
        );
    }

    /// `stores` may hold one store or several views of the same data (two processes on one file).
    pub async fn concurrent_writers(stores: &[Arc<dyn Store>]) {
        const WRITERS: usize = 16;
        let s0 = &stores[0];
        s0.insert(T, &Entity::new("c", "lease").with("owner", "nobody"))
            .await
            .unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
        let mut tasks = Vec::new();
        for i in 0..WRITERS {
            let s = stores[i % stores.len()].clone();
            let barrier = barrier.clone();
            tasks.push(tokio::spawn(async move {
                let mut e = s.get(T, "c", "lease").await.unwrap().unwrap();
                let tag = e.etag.clone().unwrap();
                // Everyone has read the same version before anyone writes.
                barrier.wait().await;
                e.set("owner", format!("writer-{i}"));
                (i, s.replace(T, &e, &tag).await)
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                (i, Ok(tag)) => winners.push((i, tag)),
                (_, Err(StoreError::PreconditionFailed)) => {}
                (i, Err(e)) => panic!("writer {i}: unexpected {e:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one writer wins: {winners:?}");
        let (i, tag) = &winners[0];
        for s in stores {
            let got = s.get(T, "c", "lease").await.unwrap().unwrap();
            assert_eq!(got.str("owner"), Some(format!("writer-{i}").as_str()));
            assert_eq!(got.etag.as_ref(), Some(tag));
        }
    }

    pub async fn tables_are_separate(s: &dyn Store) {
        s.insert(tables::RUNS, &Entity::new("p", "r").with("t", "runs"))
            .await
            .unwrap();
        s.insert(tables::LEASES, &Entity::new("p", "r").with("t", "leases"))
            .await
            .unwrap();
        assert_eq!(
            s.get(tables::RUNS, "p", "r")
                .await
                .unwrap()
                .unwrap()
                .str("t"),
            Some("runs")
        );
        assert_eq!(
            s.get(tables::LEASES, "p", "r")
                .await
                .unwrap()
                .unwrap()
                .str("t"),
            Some("leases")
        );
        assert!(s
            .get(tables::CHECKPOINTS, "p", "r")
            .await
            .unwrap()
            .is_none());
        assert!(!s.describe().is_empty());
    }
}

macro_rules! store_contract {
    ($backend:ident) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn insert_get_conflict() {
                contract::insert_get_conflict(&*super::$backend().await.store).await;
            }
            #[tokio::test]
            async fn upsert() {
                contract::upsert(&*super::$backend().await.store).await;
            }
            #[tokio::test]
            async fn replace_if_match() {
                contract::replace(&*super::$backend().await.store).await;
            }
            #[tokio::test]
            async fn delete_if_match() {
                contract::delete(&*super::$backend().await.store).await;
            }
            #[tokio::test]
            async fn query_paging() {
                contract::query_paging(&*super::$backend().await.store).await;
            }
            #[tokio::test]
            async fn batch_all_or_nothing() {
                contract::batch_all_or_nothing(&*super::$backend().await.store).await;
            }
            #[tokio::test]
            async fn exact_values() {
                contract::exact_values(&*super::$backend().await.store).await;
            }
            #[tokio::test]
            async fn awkward_keys() {
                contract::awkward_keys(&*super::$backend().await.store).await;
            }
            #[tokio::test]
            async fn tables_are_separate() {
                contract::tables_are_separate(&*super::$backend().await.store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_writers_one_wins() {
                let f = super::$backend().await;
                contract::concurrent_writers(std::slice::from_ref(&f.store)).await;
            }
        }
    };
}

store_contract!(sqlite);
store_contract!(azure);

/// Two `SqliteStore`s on one file stand for two processes (e.g. `serve` and a CLI run).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_instances_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let a: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let b: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let t1 = a
        .insert(T, &Entity::new("p", "r").with("v", 1i64))
        .await
        .unwrap();
    is(
        b.insert(T, &Entity::new("p", "r")).await,
        conflict,
        "insert through the second instance",
    );
    let seen = b.get(T, "p", "r").await.unwrap().unwrap();
    assert_eq!(seen.etag.as_ref(), Some(&t1));
    let t2 = b
        .replace(T, &Entity::new("p", "r").with("v", 2i64), &t1)
        .await
        .unwrap();
    is(
        a.replace(T, &Entity::new("p", "r").with("v", 3i64), &t1)
            .await,
        precondition,
        "stale replace from A",
    );
    assert_eq!(a.get(T, "p", "r").await.unwrap().unwrap().etag, Some(t2));
    contract::concurrent_writers(&[a.clone(), b.clone()]).await;
    // Batches through both instances stay atomic.
    is(
        a.batch(
            T,
            "p",
            vec![
                BatchOp::Insert(Entity::new("p", "x")),
                BatchOp::Replace(Entity::new("p", "r"), t1),
            ],
        )
        .await,
        precondition,
        "stale batch from A",
    );
    assert!(b.get(T, "p", "x").await.unwrap().is_none());
}

/// ETags of one backend never validate on another row or after delete + re-create.
#[tokio::test]
async fn etag_of_a_recreated_row_is_new() {
    for f in [sqlite().await, azure().await] {
        let s = &*f.store;
        let old = s.insert(T, &Entity::new("p", "r")).await.unwrap();
        s.delete(T, "p", "r", None).await.unwrap();
        // Azure ETags carry a timestamp: make sure the clock moved.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let new = s.insert(T, &Entity::new("p", "r")).await.unwrap();
        assert_ne!(old, new, "{}", s.describe());
        is(
            s.replace(T, &Entity::new("p", "r"), &old).await,
            precondition,
            "old ETag on re-created row",
        );
        for garbage in ["garbage", "W/\"5\"", "\"0x8D\"", ""] {
            let tag = ETag(garbage.into());
            is(
                s.replace(T, &Entity::new("p", "r"), &tag).await,
                precondition,
                garbage,
            );
            is(
                s.delete(T, "p", "r", Some(&tag)).await,
                precondition,
                garbage,
            );
        }
    }
}

// ---------------------------------------------------------------- blobs

fn fs_blobs() -> (Arc<dyn BlobStore>, Option<tempfile::TempDir>) {
    let dir = tempfile::tempdir().unwrap();
    (
        Arc::new(FsBlobStore::new(dir.path().to_path_buf())),
        Some(dir),
    )
}

fn azure_blobs() -> (Arc<dyn BlobStore>, Option<tempfile::TempDir>) {
    let settings = testkit::azurite::storage_settings("blobs");
    (Arc::new(AzureBlobStore::new(&settings).unwrap()), None)
}

fn container() -> String {
    // Containers are shared by the whole Azurite: one per test.
    format!("contract-{}", uuid::Uuid::new_v4().simple())
}

async fn blob_contract(b: &dyn BlobStore) {
    let c = container();
    assert!(
        b.get(&c, "teams-app/1.0.0.zip").await.unwrap().is_none(),
        "missing container"
    );
    assert!(b.list(&c, "").await.unwrap().is_empty());
    is(
        b.delete(&c, "nothing").await,
        not_found,
        "delete in a missing container",
    );

    b.put(
        &c,
        "teams-app/1.0.0.zip",
        b"zip-1".to_vec(),
        "application/zip",
    )
    .await
    .unwrap();
    b.put(
        &c,
        "teams-app/1.1.0.zip",
        b"zip-2".to_vec(),
        "application/zip",
    )
    .await
    .unwrap();
    b.put(
        &c,
        "runs/2026/run-1.json",
        br#"{"ok":true}"#.to_vec(),
        "application/json",
    )
    .await
    .unwrap();
    b.put(
        &c,
        "élève o'connor.txt",
        "é🎓".as_bytes().to_vec(),
        "text/plain",
    )
    .await
    .unwrap();
    assert_eq!(
        b.get(&c, "teams-app/1.0.0.zip").await.unwrap().as_deref(),
        Some(&b"zip-1"[..])
    );
    assert_eq!(
        b.get(&c, "élève o'connor.txt").await.unwrap().as_deref(),
        Some("é🎓".as_bytes())
    );
    assert!(b.get(&c, "teams-app/9.9.9.zip").await.unwrap().is_none());

    // Overwrite.
    b.put(
        &c,
        "teams-app/1.0.0.zip",
        b"zip-1b".to_vec(),
        "application/zip",
    )
    .await
    .unwrap();
    assert_eq!(
        b.get(&c, "teams-app/1.0.0.zip").await.unwrap().as_deref(),
        Some(&b"zip-1b"[..])
    );

    assert_eq!(
        b.list(&c, "teams-app/").await.unwrap(),
        ["teams-app/1.0.0.zip", "teams-app/1.1.0.zip"]
    );
    assert_eq!(b.list(&c, "runs/").await.unwrap(), ["runs/2026/run-1.json"]);
    assert_eq!(b.list(&c, "").await.unwrap().len(), 4);
    assert!(b.list(&c, "nope/").await.unwrap().is_empty());

    // Empty and larger bodies.
    b.put(&c, "empty", Vec::new(), "application/octet-stream")
        .await
        .unwrap();
    assert_eq!(b.get(&c, "empty").await.unwrap(), Some(Vec::new()));
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    b.put(&c, "big.bin", big.clone(), "application/octet-stream")
        .await
        .unwrap();
    assert_eq!(
        b.get(&c, "big.bin").await.unwrap().as_deref(),
        Some(&big[..])
    );

    b.delete(&c, "teams-app/1.0.0.zip").await.unwrap();
    assert!(b.get(&c, "teams-app/1.0.0.zip").await.unwrap().is_none());
    is(
        b.delete(&c, "teams-app/1.0.0.zip").await,
        not_found,
        "delete twice",
    );
    assert_eq!(
        b.list(&c, "teams-app/").await.unwrap(),
        ["teams-app/1.1.0.zip"]
    );

    // Names Azure refuses are refused everywhere (and no path escapes the folder backend).
    for bad in ["Bad_Container", "ab", "-abc", "a--b"] {
        is(
            b.put(bad, "x", b"x".to_vec(), "text/plain").await,
            invalid,
            "bad container",
        );
    }
    for bad in ["", "../escape", "/abs", "a/../b", "a\\b"] {
        is(
            b.put(&c, bad, b"x".to_vec(), "text/plain").await,
            invalid,
            "bad blob name",
        );
        is(b.get(&c, bad).await, invalid, "bad blob name on get");
    }
    assert!(!b.describe().is_empty());
}

#[tokio::test]
async fn blob_contract_fs() {
    let (b, _dir) = fs_blobs();
    blob_contract(&*b).await;
}

#[tokio::test]
async fn blob_contract_azure() {
    let (b, _dir) = azure_blobs();
    blob_contract(&*b).await;
}

#[tokio::test]
async fn azure_store_reports_a_missing_table() {
    // No ensure_tables: a clear error, not "not found".
    let settings = testkit::azurite::storage_settings("notables");
    let s = AzureTableStore::new(&settings).unwrap();
    match s.insert(T, &Entity::new("p", "r")).await {
        Err(StoreError::Backend(msg)) => assert!(msg.contains("ensure_tables"), "{msg}"),
        other => panic!("expected a backend error, got {other:?}"),
    }
    match s.get(T, "p", "r").await {
        Err(StoreError::Backend(msg)) => assert!(msg.contains("ensure_tables"), "{msg}"),
        other => panic!("expected a backend error, got {other:?}"),
    }
    // A trailing slash on the endpoint is harmless.
    let mut slash = testkit::azurite::storage_settings("slash");
    slash.table_endpoint = slash.table_endpoint.map(|e| format!("{e}/"));
    let s = AzureTableStore::new(&slash).unwrap();
    s.ensure_tables().await.unwrap();
    s.insert(T, &Entity::new("p", "r")).await.unwrap();
    // A bad prefix is refused up front.
    let mut bad = testkit::azurite::storage_settings("x");
    bad.table_prefix = "bad-prefix".into();
    assert!(AzureTableStore::new(&bad).is_err());
}
