//! The SQLite backend's own tests: what survives reopening, migrations from older
//! schemas, a read-only state, and the files it refuses.

use super::schema::MIGRATIONS;
use super::*;
use crate::plan::fingerprint::PackageHead;
use forgewatch_adapters::http::CachedResponse;

/// Mainline inputs of one package `a` at `head`.
pub(super) fn inputs(head: &str) -> BuildInputs {
    BuildInputs::mainline(vec![PackageHead {
        name: "a".into(),
        repository: "github.com/acme/a".into(),
        branch: "main".into(),
        head: head.into(),
    }])
}

/// A pending delivery of `inputs` to CI target `bb`, due at once.
pub(super) fn pending(key: &BuildKey, inputs: &BuildInputs, id: &str) -> outbox::Pending {
    outbox::Pending {
        key: key.clone(),
        inputs: inputs.clone(),
        delivery_id: id.into(),
        ci: "bb".into(),
        reason: "r".into(),
        trigger: forgewatch_adapters::ci::BuildTrigger {
            delivery_id: id.into(),
            fields: forgewatch_adapters::ci::TriggerFields {
                author: String::new(),
                committer: String::new(),
                branch: String::new(),
                category: String::new(),
                codebase: String::new(),
                comments: String::new(),
                project: String::new(),
                repository: String::new(),
                revision: String::new(),
                revlink: String::new(),
                when_timestamp: 0,
            },
            properties: Default::default(),
        },
        attempts: 0,
        next_attempt: 0,
        last_error: None,
        enqueued_at: 0,
    }
}

/// Enqueues and completes one delivery, as the sender does.
fn deliver(state: &State, key: &BuildKey, inputs: &BuildInputs, id: &str) {
    let item = pending(key, inputs, id);
    state
        .enqueue(&[outbox::Enqueued::from(&item)], &[], 1)
        .unwrap();
    if !state.read_only() {
        assert_eq!(
            state.build_marks().unwrap()[key].pending,
            Some(inputs.fingerprint())
        );
    }
    state
        .complete_delivery(&item, 5_000, "delivered", &[])
        .unwrap();
    let marks = state.build_marks().unwrap();
    assert_eq!(marks.get(key).and_then(|m| m.pending.as_ref()), None);
}

#[test]
fn deliveries_and_cache_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let key = BuildKey::mainline("ws");
    {
        let state = State::open(dir.path()).unwrap();
        assert_eq!(state.delivered(&key).unwrap(), None);
        deliver(&state, &key, &inputs("1"), "id");
        deliver(&state, &key, &inputs("2"), "id2");
        let cached = CachedResponse {
            etag: Some("\"e\"".into()),
            last_modified: None,
            next_url: Some("n".into()),
            body: b"[]".to_vec(),
        };
        state.save_cached("k", &cached, 0);
        assert_eq!(state.cached("k", true, 0), Some(cached));
    }
    let state = State::open(dir.path()).unwrap();
    let delivered = state.delivered(&key).unwrap().unwrap();
    assert_eq!(delivered.fingerprint, inputs("2").fingerprint());
    assert_eq!(delivered.inputs, Some(inputs("2")));
    assert_eq!(
        state.cached("k", true, 0).unwrap().etag.as_deref(),
        Some("\"e\"")
    );
    let marks = state.build_marks().unwrap();
    assert_eq!(marks.keys().collect::<Vec<_>>(), vec![&key]);
    assert_eq!(
        state.build_keys_with_prefix("ws/").unwrap(),
        vec![key.clone()]
    );
    assert_eq!(marks[&key].delivered, Some(inputs("2").fingerprint()));
    state.forget_builds(std::slice::from_ref(&key)).unwrap();
    assert_eq!(state.delivered(&key).unwrap(), None);
}

#[test]
fn read_only_state_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = BuildKey::mainline("ws");
    let ro = State::open_read_only(dir.path()).unwrap();
    deliver(&ro, &key, &inputs("1"), "id");
    ro.save_cached("k", &CachedResponse::default(), 0);
    assert_eq!(ro.delivered(&key).unwrap(), None);
    assert!(!dir.path().join(DATABASE_FILE).exists());
}

#[test]
fn a_version_1_database_is_migrated_keeping_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
    conn.execute_batch(&format!(
        "BEGIN; {} PRAGMA user_version = 1; COMMIT;",
        MIGRATIONS[0]
    ))
    .unwrap();
    conn.execute(
        "INSERT INTO builds VALUES ('ws/mainline', 'sha256:x', '{}', 'id', 1)",
        [],
    )
    .unwrap();
    drop(conn);
    let state = State::open(dir.path()).unwrap();
    let version: i64 = state
        .conn()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let kept = state.delivered(&BuildKey::mainline("ws")).unwrap().unwrap();
    assert_eq!(kept.fingerprint.as_str(), "sha256:x");
    assert_eq!(state.jobs_of("ws", 1).unwrap(), vec![]);
    assert_eq!(state.discoveries_of("ws").unwrap(), vec![]);
}

#[test]
fn a_version_5_database_gains_the_discoveries_table() {
    let dir = tempfile::tempdir().unwrap();
    let state = migrated_from(5, dir.path());
    assert_eq!(state.discoveries_of("ws").unwrap(), vec![]);
}

/// A database of schema `version` with one delivered build in `dir`, opened by this
/// version: it is migrated to [`SCHEMA_VERSION`] and the build is kept.
pub(super) fn migrated_from(version: usize, dir: &Path) -> State {
    let conn = Connection::open(dir.join(DATABASE_FILE)).unwrap();
    conn.execute_batch(&format!(
        "BEGIN; {} PRAGMA user_version = {version}; COMMIT;",
        MIGRATIONS[..version].join(" ")
    ))
    .unwrap();
    conn.execute(
        "INSERT INTO builds VALUES ('ws/mainline', 'sha256:x', '{}', 'id', 1)",
        [],
    )
    .unwrap();
    drop(conn);
    let state = State::open(dir).unwrap();
    let migrated: i64 = state
        .conn()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(migrated, SCHEMA_VERSION);
    assert!(
        state
            .delivered(&BuildKey::mainline("ws"))
            .unwrap()
            .is_some()
    );
    state
}

/// What `State::open` and `State::open_read_only` say of the database `dir` holds,
/// which must be left as it was.
fn refusals(dir: &Path) -> [String; 2] {
    let file = dir.join(DATABASE_FILE);
    let before = std::fs::read(&file).unwrap();
    let refusals = [
        State::open(dir).err().unwrap().to_string(),
        State::open_read_only(dir).err().unwrap().to_string(),
    ];
    assert_eq!(std::fs::read(&file).unwrap(), before);
    refusals
}

/// Writes a file at the path given.
type MakeFile = fn(&Path);

#[test]
fn refuses_a_file_that_is_not_a_state_database_saying_what_to_do() {
    let cases: [(&str, MakeFile); 4] = [
        ("0 bytes", |f| std::fs::write(f, b"").unwrap()),
        ("not an SQLite file", |f| {
            std::fs::write(f, vec![0x5a; 8192]).unwrap()
        }),
        ("an SQLite database of other tables: photos, tags", |f| {
            Connection::open(f)
                .unwrap()
                .execute_batch("CREATE TABLE photos (id INTEGER); CREATE TABLE tags (t TEXT);")
                .unwrap();
        }),
        (
            "an SQLite database with no tables and no schema version",
            |f| {
                Connection::open(f)
                    .unwrap()
                    .execute_batch("CREATE TABLE t (x); DROP TABLE t;")
                    .unwrap();
            },
        ),
    ];
    for (why, make) in cases {
        let dir = tempfile::tempdir().unwrap();
        make(&dir.path().join(DATABASE_FILE));
        let expected = format!(
            "{}/state.sqlite3 exists but is not a forgewatch state database ({why}); move it away to start from an empty state, or restore it from a backup",
            dir.path().display()
        );
        assert_eq!(refusals(dir.path()), [expected.clone(), expected]);
        let file = dir.path().join(DATABASE_FILE);
        assert!(!schema::suffixed(&file, "-wal").exists());
    }
}

#[test]
fn refuses_a_damaged_schema_naming_what_it_lacks() {
    let cases = [
        ("DROP TABLE outbox;", "table outbox is missing"),
        (
            "ALTER TABLE jobs DROP COLUMN detail;",
            "table jobs lacks column detail",
        ),
        (
            "DROP TABLE forge_pauses; CREATE TABLE forge_pauses (origin TEXT PRIMARY KEY, until_ms TEXT NOT NULL, reason TEXT NOT NULL, backoff_step INTEGER NOT NULL);",
            "column forge_pauses.until_ms is `TEXT NOT NULL`, not `INTEGER NOT NULL`",
        ),
    ];
    for (damage, problem) in cases {
        let dir = tempfile::tempdir().unwrap();
        drop(State::open(dir.path()).unwrap());
        Connection::open(dir.path().join(DATABASE_FILE))
            .unwrap()
            .execute_batch(damage)
            .unwrap();
        let expected = format!(
            "{}/state.sqlite3: the state database is damaged: {problem}; restore it from a backup, or move it away to start from an empty state",
            dir.path().display()
        );
        assert_eq!(refusals(dir.path()), [expected.clone(), expected]);
    }
}

#[test]
fn an_older_schema_is_checked_as_it_was_at_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
    conn.execute_batch(&format!(
        "BEGIN; {} DROP TABLE job_lines; PRAGMA user_version = 2; COMMIT;",
        MIGRATIONS[..2].join(" ")
    ))
    .unwrap();
    drop(conn);
    let message = refusals(dir.path())[0].clone();
    assert!(
        message.ends_with(
            "damaged: table job_lines is missing; restore it from a backup, or move it away to start from an empty state"
        ),
        "{message}"
    );
}

#[test]
fn refuses_a_database_with_a_damaged_page() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path()).unwrap();
    for i in 0..2_000 {
        state.record_event(i, "delivered", Some("ws"), None, &"x".repeat(100));
    }
    drop(state);
    let file = dir.path().join(DATABASE_FILE);
    let mut bytes = std::fs::read(&file).unwrap();
    let page = 4096;
    assert!(bytes.len() > 10 * page, "{}", bytes.len());
    // Page 8's b-tree header: an invalid page type.
    bytes[7 * page..7 * page + 8].fill(0xff);
    std::fs::write(&file, bytes).unwrap();
    let message = refusals(dir.path())[0].clone();
    assert!(
        message.contains("state.sqlite3: the state database is damaged: quick_check"),
        "{message}"
    );
}

#[test]
fn a_write_ahead_log_without_its_database_is_not_replayed_into_a_new_one() {
    // The log of a live database, as a crash leaves it.
    let moved = tempfile::tempdir().unwrap();
    let live = State::open(moved.path()).unwrap();
    deliver(&live, &BuildKey::mainline("ws"), &inputs("1"), "id");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(DATABASE_FILE);
    let log = schema::suffixed(&file, "-wal");
    std::fs::copy(
        schema::suffixed(&moved.path().join(DATABASE_FILE), "-wal"),
        &log,
    )
    .unwrap();
    drop(live);
    let message = State::open(dir.path()).err().unwrap().to_string();
    assert_eq!(
        message,
        format!(
            "the state database is missing but its write-ahead log {} is there; move the log away too to start from an empty state, or put the database back",
            log.display()
        )
    );
    assert!(!file.exists());
    std::fs::remove_file(&log).unwrap();
    drop(State::open(dir.path()).unwrap());
}

#[test]
fn an_interrupted_creation_is_replaced_and_the_database_created_whole() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = schema::suffixed(&dir.path().join(DATABASE_FILE), ".new");
    std::fs::write(&fresh, b"half").unwrap();
    let state = State::open(dir.path()).unwrap();
    assert!(!fresh.exists());
    assert_eq!(state.jobs_of("ws", 1).unwrap(), vec![]);
    drop(state);
    drop(State::open_read_only(dir.path()).unwrap());
}

#[test]
fn refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    drop(State::open(dir.path()).unwrap());
    let conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let err = State::open(dir.path()).err().unwrap();
    assert!(
        matches!(err, StateError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1),
        "{err}"
    );
}
