//! Tests of the manifest readers (`forgewatch_workspace_runner::manifest`) against
//! the fixture files in `tests/fixtures/manifest/`: the autoproj installation
//! manifest of notes/autoproj.md §1.2 (extended), the error cases, and the
//! forgewatch format in YAML and JSON.

use std::path::{Path, PathBuf};

use forgewatch_workspace_runner::manifest::{
    Entry, Format, Manifest, ManifestError, Skipped, parse, read,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/manifest")
        .join(name)
}

fn entry(name: &str, url: &str, branch: Option<&str>) -> Entry {
    Entry {
        name: name.to_owned(),
        url: url.to_owned(),
        branch: branch.map(str::to_owned),
        package_set: None,
    }
}

fn skipped(name: &str, reason: &str) -> Skipped {
    Skipped {
        name: name.to_owned(),
        reason: reason.to_owned(),
    }
}

fn autoproj(text: &str) -> Result<Manifest, ManifestError> {
    parse(text, Format::Autoproj, Path::new("inline"))
}

#[test]
fn autoproj_fixture_reads_to_the_exact_manifest() {
    let manifest = read(&fixture("installation-manifest"), Format::Autoproj).unwrap();
    let expected = Manifest {
        entries: vec![
            Entry {
                name: "pkg_set:github:/acme-robotics/package_set.git".to_owned(),
                url: "https://github.com/acme-robotics/package_set.git".to_owned(),
                branch: Some("main".to_owned()),
                package_set: Some("github:/acme-robotics/package_set.git".to_owned()),
            },
            entry(
                "base/geometry",
                "https://github.com/acme-robotics/base-geometry.git",
                Some("main"),
            ),
            entry(
                "drivers/lidar_x",
                "https://gitlab.example.org/sensors/drivers/lidar-x.git",
                Some("develop"),
            ),
            entry(
                "tools/plain_keys",
                "git://GITHUB.com/acme/plain-keys",
                Some("1.10"),
            ),
            entry(
                "tools/unpinned",
                "https://github.com/acme-robotics/unpinned.git",
                None,
            ),
            entry(
                "base/types",
                "https://github.com/rock-core/base-types.git",
                Some("master"),
            ),
            entry(
                "base/numbers",
                "https://github.com/acme-robotics/base-numbers.git",
                Some("refs/pull/12/merge"),
            ),
        ],
        skipped: vec![
            skipped(
                "pkg_set:local:/srv/ws/autoproj/acme.local",
                "not a git package (local)",
            ),
            skipped("tools/calib_scripts", "pinned to tag v1.4.0"),
            skipped("legacy/svn_tool", "not a git package (svn)"),
            skipped(
                "vendor/pinned_lib",
                "pinned to commit 3f1c9a0d5e7b2c4a6f8e0d1b3c5a7e9f1b2d4c6e",
            ),
            skipped("base/geometry", "duplicate name"),
        ],
    };
    assert_eq!(manifest, expected);
}

#[test]
fn missing_file_says_to_run_autoproj_envsh() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".autoproj/installation-manifest");
    let err = read(&path, Format::Autoproj).unwrap_err();
    assert!(
        matches!(&err, ManifestError::Missing { path: p, format: Format::Autoproj } if *p == path),
        "{err:?}"
    );
    assert!(err.to_string().contains("autoproj envsh"), "{err}");

    let err = read(&path, Format::Forgewatch).unwrap_err();
    assert!(matches!(err, ManifestError::Missing { .. }), "{err:?}");
    assert!(!err.to_string().contains("envsh"), "{err}");
}

#[test]
fn unreadable_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = read(dir.path(), Format::Autoproj).unwrap_err();
    assert!(matches!(err, ManifestError::Unreadable { .. }), "{err:?}");

    let path = dir.path().join("latin1");
    std::fs::write(&path, b"- name: caf\xe9\n").unwrap();
    let err = read(&path, Format::Autoproj).unwrap_err();
    assert!(matches!(err, ManifestError::Unreadable { .. }), "{err:?}");
}

#[test]
fn empty_and_null_documents_are_empty() {
    for (name, format) in [
        ("empty", Format::Autoproj),
        ("comments-only", Format::Autoproj),
        ("empty", Format::Forgewatch),
    ] {
        let err = read(&fixture(name), format).unwrap_err();
        assert!(
            matches!(&err, ManifestError::Empty { path } if *path == fixture(name)),
            "{name}: {err:?}"
        );
    }
    assert!(matches!(autoproj("~\n"), Err(ManifestError::Empty { .. })));
}

#[test]
fn an_empty_list_is_a_valid_manifest_without_packages() {
    for format in [Format::Autoproj, Format::Forgewatch] {
        assert_eq!(
            read(&fixture("empty-list"), format).unwrap(),
            Manifest::default()
        );
    }
}

#[test]
fn scalar_top_level_is_the_obsolete_csv_format() {
    let err = read(&fixture("obsolete-csv"), Format::Autoproj).unwrap_err();
    assert!(matches!(err, ManifestError::ObsoleteCsv { .. }), "{err:?}");
    assert!(err.to_string().contains("CSV"), "{err}");
}

#[test]
fn malformed_yaml_is_located() {
    let path = fixture("malformed.yml");
    let err = read(&path, Format::Autoproj).unwrap_err();
    let ManifestError::Malformed {
        line,
        column,
        message,
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!((*line, *column), (4, 11), "{message}");
    assert!(
        err.to_string()
            .starts_with(&format!("{}:4:11: ", path.display())),
        "{err}"
    );
}

#[test]
fn a_mapping_at_top_level_is_malformed() {
    let err = autoproj("name: base/types\n").unwrap_err();
    assert!(
        matches!(&err, ManifestError::Malformed { line: 1, column: 1, message, .. }
            if message.contains("found a mapping")),
        "{err:?}"
    );
}

#[test]
fn entry_without_name_is_invalid() {
    let err = read(&fixture("no-name.yml"), Format::Autoproj).unwrap_err();
    assert!(
        matches!(&err, ManifestError::Invalid { entry: 1, message, .. }
            if message == "line 3: a package without `name`"),
        "{err:?}"
    );
}

#[test]
fn git_package_without_url_is_invalid() {
    let err = read(&fixture("git-without-url.yml"), Format::Autoproj).unwrap_err();
    assert!(
        matches!(&err, ManifestError::Invalid { entry: 1, message, .. }
            if message == "line 5: package `base/broken`: git package without `url`"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "{}: entry [1]: line 5: package `base/broken`: git package without `url`",
            fixture("git-without-url.yml").display()
        )
    );
}

#[test]
fn entry_that_is_not_a_mapping_is_invalid() {
    let err = read(&fixture("not-a-map.yml"), Format::Autoproj).unwrap_err();
    assert!(
        matches!(&err, ManifestError::Invalid { entry: 1, message, .. }
            if message == "line 3: expected a mapping, found a string"),
        "{err:?}"
    );
    let err = autoproj("- name: x\n  vcs: git:https://example.org/x\n").unwrap_err();
    assert!(
        matches!(&err, ManifestError::Invalid { entry: 0, message, .. }
            if message.contains("`vcs` must be a mapping, found a string")),
        "{err:?}"
    );
}

#[test]
fn duplicate_names_keep_the_first() {
    let manifest = autoproj(
        "- name: a\n  vcs: {type: git, url: https://example.org/a1}\n\
         - name: a\n  vcs: {type: git, url: https://example.org/a2}\n\
         - name: a\n  vcs: {type: svn, url: svn://example.org/a3}\n",
    )
    .unwrap();
    assert_eq!(
        manifest,
        Manifest {
            entries: vec![entry("a", "https://example.org/a1", None)],
            skipped: vec![
                skipped("a", "duplicate name"),
                skipped("a", "duplicate name")
            ],
        }
    );
}

#[test]
fn autoproj_leniency() {
    let manifest = autoproj(
        "- name: old.set\n  type: PackageSet\n  vcs: {type: git, url: https://example.org/set.git}\n\
         - name: no/vcs\n  vcs: ~\n\
         - name: no/type\n  vcs: {url: https://example.org/x}\n\
         - name: empty/strings\n  vcs: {type: git, url: https://example.org/e, branch: '', tag: ''}\n\
         - name: dup/keys\n  vcs: {:url: https://example.org/first, url: https://example.org/last, type: git}\n\
         - name: gh/suffix\n  vcs: {github: /acme/repo.git/, repository_id: custom}\n\
         - name: gh.set\n  package_set: gh.set\n  vcs: {github: acme/set}\n",
    )
    .unwrap();
    assert_eq!(
        manifest,
        Manifest {
            entries: vec![
                Entry {
                    name: "pkg_set:git:https://example.org/set.git".to_owned(),
                    url: "https://example.org/set.git".to_owned(),
                    branch: None,
                    package_set: Some("git:https://example.org/set.git".to_owned()),
                },
                entry("empty/strings", "https://example.org/e", None),
                entry("dup/keys", "https://example.org/last", None),
                entry("gh/suffix", "https://github.com/acme/repo.git", None),
                Entry {
                    name: "pkg_set:github:/acme/set.git".to_owned(),
                    url: "https://github.com/acme/set.git".to_owned(),
                    branch: None,
                    package_set: Some("github:/acme/set.git".to_owned()),
                },
            ],
            skipped: vec![
                skipped("no/vcs", "no version control (vcs)"),
                skipped("no/type", "not a git package (no vcs type)"),
            ],
        }
    );
}

fn forgewatch_expected() -> Manifest {
    Manifest {
        entries: vec![
            entry(
                "base/types",
                "https://github.com/rock-core/base-types",
                Some("master"),
            ),
            entry(
                "drivers/lidar_x",
                "git@gitlab.example.org:sensors/drivers/lidar-x.git",
                None,
            ),
            entry("tools/calib", "https://github.com/acme/calib", None),
        ],
        skipped: Vec::new(),
    }
}

#[test]
fn forgewatch_format_in_yaml_and_json() {
    for name in ["forgewatch.yml", "forgewatch.json"] {
        assert_eq!(
            read(&fixture(name), Format::Forgewatch).unwrap(),
            forgewatch_expected(),
            "{name}"
        );
    }
}

#[test]
fn forgewatch_format_refuses_unknown_keys() {
    let err = read(&fixture("forgewatch-unknown-key.yml"), Format::Forgewatch).unwrap_err();
    assert!(
        matches!(&err, ManifestError::Malformed { line: 5, column: 3, message, .. }
            if message.contains("unknown field `tag`")),
        "{err:?}"
    );
}

#[test]
fn forgewatch_format_refuses_missing_repo() {
    let err = read(&fixture("forgewatch-missing-repo.json"), Format::Forgewatch).unwrap_err();
    assert!(
        matches!(&err, ManifestError::Invalid { entry: 1, message, .. }
            if message == "line 3: package `tools/calib`: missing `repo`"),
        "{err:?}"
    );
}

#[test]
fn forgewatch_format_other_errors() {
    let fw = |text: &str| parse(text, Format::Forgewatch, Path::new("inline")).unwrap_err();
    assert!(matches!(
        fw("- {name: a, repo: r}\n- {name: a, repo: s}\n"),
        ManifestError::Invalid { entry: 1, .. }
    ));
    assert!(matches!(
        fw("- {repo: r}\n"),
        ManifestError::Invalid { entry: 0, .. }
    ));
    assert!(matches!(
        fw("- {name: a, repo: r, branch: ''}\n"),
        ManifestError::Invalid { entry: 0, .. }
    ));
    assert!(matches!(
        fw("- {name: a, repo: r, name: b}\n"),
        ManifestError::Malformed { line: 1, .. }
    ));
    assert!(matches!(
        fw("just a string\n"),
        ManifestError::Malformed { line: 1, .. }
    ));
    assert!(matches!(
        fw("- a string\n"),
        ManifestError::Malformed { line: 1, .. }
    ));
}

#[test]
fn large_manifest_with_aliases() {
    let mut text = String::new();
    for i in 0..2000 {
        text.push_str(&format!(
            "- name: pkg/{i}\n  type: Autobuild::CMake\n  vcs:\n    :type: git\n    \
             :url: https://example.org/pkg{i}.git\n    :branch: &b{i} main\n    \
             :local_branch: *b{i}\n  srcdir: &s{i} /srv/ws/pkg/{i}\n  importdir: *s{i}\n  \
             dependencies: [a, b, c]\n  manifest:\n    authors: [{{name: a, email: b}}]\n    \
             tags: [x, y]\n"
        ));
    }
    let manifest = autoproj(&text).unwrap();
    assert_eq!(manifest.entries.len(), 2000);
    assert_eq!(
        manifest.entries[1999],
        entry("pkg/1999", "https://example.org/pkg1999.git", Some("main"))
    );
}

#[test]
fn error_messages() {
    for (name, format) in [
        ("malformed.yml", Format::Autoproj),
        ("obsolete-csv", Format::Autoproj),
        ("no-name.yml", Format::Autoproj),
        ("forgewatch-unknown-key.yml", Format::Forgewatch),
        ("empty", Format::Autoproj),
    ] {
        let err = read(&fixture(name), format).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&fixture(name).display().to_string()),
            "{text}"
        );
        assert!(!text.contains('\n'), "{text}");
    }
}
